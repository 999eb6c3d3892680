# Simulated temperature sensor for the virtual board: base_c + drift_c per reading.
from drivers.errors import SensorError


class SimTemp:
    name = "SimTemp"

    def __init__(self, base_c=25.0, drift_c=0.0):
        self.base_c = base_c
        self.drift_c = drift_c
        self.reads = 0
        self.fail = False  # tests: True makes read_c raise SensorError

    def read_c(self):
        if self.fail:
            raise SensorError("SimTemp: simulated sensor failure")
        v = self.base_c + self.drift_c * self.reads
        self.reads += 1
        return v


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = (("SimTemp", "__init__"),)
