# Node clock: uptime from ticks (wrap-safe), Unix time once synced (NTP or bridge ack).
#
# Before sync, timestamps are seconds since boot (CLOCK_SYNCED clear), as docs/protocol.md
# asks. Sync sets an offset; no RTC is trusted, so the unix port behaves like a board.
import time


class Clock:
    def __init__(self, ticks_ms=time.ticks_ms, ticks_diff=time.ticks_diff):
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._last = ticks_ms()
        self._up = 0  # ms since boot, accumulated so the ticks wrap never shows
        self._offset = 0  # unix_ms - uptime_ms
        self.synced = False
        self.syncs = 0
        self.last_step_ms = 0  # size of the last correction, for the log

    def uptime_ms(self):
        t = self._ticks_ms()
        self._up += self._ticks_diff(t, self._last)
        self._last = t
        return self._up

    def sync(self, unix_ms):
        up = self.uptime_ms()
        off = unix_ms - up
        self.last_step_ms = off - self._offset if self.synced else 0
        self._offset = off
        self.synced = True
        self.syncs += 1

    def now_ms(self):
        """Unix ms when synced, else ms since boot."""
        up = self.uptime_ms()
        return up + self._offset if self.synced else up

    def unix_ms_at(self, uptime_ms):
        """Unix ms of a moment of this boot given as ms since boot (only once synced)."""
        return uptime_ms + self._offset

    def stamp(self):
        """(ts_s, ts_ms, synced) for a record."""
        t = self.now_ms()
        return t // 1000, t % 1000, self.synced


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = (("Clock", "__init__"),)
