# One acquisition window: drain the accelerometer FIFO into preallocated int16 buffers.
#
# The sampling path allocates nothing: the driver fills x/y/z in place, the loop sleeps with
# time.sleep_ms when the FIFO is empty, and the clip check runs in a viper kernel (plain
# Python where viper is missing). No network I/O happens here; the node runs gc.collect()
# and the uplink between windows.
import time
from array import array

from micropython import const

from drivers.errors import SensorError

try:
    from vibenode.kernels import clipped16
except Exception:  # no viper emitter (CircuitPython)

    def clipped16(buf, n, fs):
        for i in range(n):
            v = buf[i]
            if v >= fs or v <= -fs:
                return 1
        return 0


_FIFO_OVERRUN = const(0x10)  # record flags (docs/protocol.md)
_CLIPPED = const(0x20)


class Acquisition:
    """samples: the buffer from new_samples(n), allocated ahead (build() does, before anything
    can fragment the heap); None allocates it here."""

    def __init__(self, accel, n, odr_hz, range_g=None, samples=None):
        self.accel = accel
        self.n = n
        self.odr_hz = odr_hz
        if range_g is not None or getattr(accel, "odr_hz", None) != odr_hz:
            accel.configure(odr_hz, range_g if range_g is not None else accel.range_g)
        self.samples = samples if samples is not None else self.new_samples(n)
        mv = memoryview(self.samples)
        self.x = mv[0:n]
        self.y = mv[n + 2 : 2 * n + 2]
        self.z = mv[2 * n + 4 : 3 * n + 4]
        self.scale_g = accel.scale_g
        # sleep about a quarter of the FIFO fill time when it is empty (3200 Hz, 32 deep: 2 ms)
        depth = getattr(accel, "fifo_depth", 32)
        self.idle_ms = max(1, int(depth * 250 / odr_hz))
        # no sample for this long (window time + 1 s) means the sensor stopped
        self.timeout_ms = int(n * 1000 / odr_hz) + 1000
        self.windows = 0
        self.overruns = 0  # windows in which the FIFO overran

    @staticmethod
    def new_samples(n):
        """One buffer for the three axes: x, y and z (n samples each) are slices of it, each
        followed by 2 spare int16. The node runs the FFT in place in them
        (FeatureExtractor(in_place=True)) and builds its batches in them between windows."""
        return array("h", range(3 * (n + 2)))

    def flush(self):
        """Drop what piled up in the FIFO since the last window (it overran meanwhile)."""
        a = self.accel
        for _ in range(64):
            if a.read_fifo_into(self.x, self.y, self.z, 0, self.n) == 0:
                break

    def capture(self):
        """Fill x, y, z with n fresh consecutive samples; return FIFO_OVERRUN | CLIPPED flags.
        Raises SensorError when the accelerometer fails or stops delivering."""
        a = self.accel
        n = self.n
        x = self.x
        y = self.y
        z = self.z
        self.flush()
        ov0 = a.overruns
        got = 0
        idle = 0
        t0 = time.ticks_ms()
        while got < n:
            k = a.read_fifo_into(x, y, z, got, n - got)
            if k:
                got += k
                idle = 0
            else:
                idle += 1
                if idle > 8 and time.ticks_diff(time.ticks_ms(), t0) > self.timeout_ms:
                    raise SensorError(
                        "%s: no samples for %d ms (%d of %d)"
                        % (getattr(a, "name", "accel"), self.timeout_ms, got, n))
                time.sleep_ms(self.idle_ms)
        flags = 0
        if a.overruns != ov0:
            flags |= _FIFO_OVERRUN
            self.overruns += 1
        fs = a.full_scale
        if clipped16(x, n, fs) or clipped16(y, n, fs) or clipped16(z, n, fs):
            flags |= _CLIPPED
        self.scale_g = a.scale_g
        self.windows += 1
        return flags


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = (("Acquisition", "__init__", "new_samples"),)
