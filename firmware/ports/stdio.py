# The REPL line as the serial uplink's byte stream (unix port, ESP32, RP2040).
import sys


class StdioStream:
    """The REPL line (USB CDC, or stdin/stdout on unix) as a non-blocking byte stream.

    Reads go byte by byte while select.poll says data is waiting: a MicroPython stream
    read(n) blocks until n bytes arrive. Writes go in chunks while the line accepts them,
    until a deadline, so a host that stopped reading cannot hang the node. On a tty,
    flush() raises EINVAL: we never flush.
    """

    def __init__(self, rx=None, tx=None, chunk=256):
        import select

        self._select = select
        self.rx = rx if rx is not None else sys.stdin.buffer
        self.tx = tx if tx is not None else sys.stdout.buffer
        self._pin = select.poll()
        self._pin.register(self.rx, select.POLLIN)
        self._pout = select.poll()
        self._pout.register(self.tx, select.POLLOUT)
        self._one = bytearray(1)
        self._chunk = chunk
        try:  # binary acks may contain 0x03: it must not raise KeyboardInterrupt
            import micropython

            micropython.kbd_intr(-1)
        except (ImportError, AttributeError):
            pass

    def wait_readable(self, timeout_ms):
        return bool(self._pin.poll(timeout_ms))

    def read_into(self, buf):
        n = 0
        one = self._one
        while n < len(buf) and self._pin.poll(0):
            if not self.rx.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write_all(self, buf, timeout_ms):
        import time

        mv = memoryview(buf)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        off = 0
        total = len(mv)
        while off < total:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not self._pout.poll(left):
                return False
            end = off + self._chunk
            if end > total:
                end = total
            w = self.tx.write(mv[off:end])
            if w is None:
                w = 0
            off += w
        return True
