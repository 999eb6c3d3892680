# Node health: error counters (nothing is swallowed silently) and the kind-1 status record.
import gc
from array import array

from micropython import const

FW_VERSION = "0.1.0"
_FW_VERSION_CODE = const(100)  # major*10000 + minor*100 + patch

# Kind-1 value indices, docs/protocol.md section 1 (private consts: folded in at compile time,
# no name or global in the heap). Index 11 is an extension (decoders keep extra values): total
# errors counted since boot.
_UPTIME = const(0)
_FREE_HEAP = const(1)
_RESET_CAUSE = const(2)
_RSSI = const(3)
_JOURNAL_DEPTH = const(4)
_JOURNAL_DROPPED = const(5)
_FIFO_OVERRUNS = const(6)
_SENSOR_FAULTS = const(7)
_FW_VERSION_IDX = const(8)
_LINK_RECONNECTS = const(9)
_WINDOWS = const(10)
_ERRORS = const(11)
_NVALUES = const(12)

_NAN = float("nan")


class Health:
    """Counters by name plus a rate-limited console log of the first errors of each kind."""

    def __init__(self, log=print, log_first=3):
        self.counts = {}
        self.errors = 0
        self._log = log
        self._log_first = log_first
        self.windows = 0
        self.fifo_overruns = 0
        self.sensor_faults = 0  # bit 0 accel, bit 1 temperature (current state)

    def error(self, name, exc=None):
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        self.errors += 1
        if n <= self._log_first or n & (n - 1) == 0:  # first few, then at powers of two
            self._log("error %s #%d%s" % (name, n, ": %r" % (exc,) if exc is not None else ""))

    def count(self, name, k=1):
        self.counts[name] = self.counts.get(name, 0) + k

    def get(self, name):
        return self.counts.get(name, 0)


def fill_status(out, uptime_s, health, journal, link_reconnects, reset_cause, rssi):
    out[_UPTIME] = uptime_s
    out[_FREE_HEAP] = gc.mem_free()
    out[_RESET_CAUSE] = reset_cause
    out[_RSSI] = _NAN if rssi is None else rssi
    out[_JOURNAL_DEPTH] = journal.depth
    out[_JOURNAL_DROPPED] = journal.dropped
    out[_FIFO_OVERRUNS] = health.fifo_overruns
    out[_SENSOR_FAULTS] = health.sensor_faults
    out[_FW_VERSION_IDX] = _FW_VERSION_CODE
    out[_LINK_RECONNECTS] = link_reconnects
    out[_WINDOWS] = health.windows
    out[_ERRORS] = health.errors
    return out


def new_status_values():
    return array("f", [0.0] * _NVALUES)


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = ("new_status_values", ("Health", "__init__"))
