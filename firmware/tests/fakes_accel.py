# Register-level fakes of accelerometers, from the datasheets, with machine.I2C / machine.SPI
# style bus objects. A test pushes samples into a fake's FIFO and checks what the driver made
# of them. Register behaviour modelled: chip id, config registers, FIFO fill/overflow/status,
# data-register burst reads popping the FIFO, overrun / watermark status bits.


class FakeI2C:
    """machine.I2C: devices keyed by address, each with read(reg, n) / write(reg, data)."""

    def __init__(self):
        self.devices = {}
        self.fail = False

    def readfrom_mem_into(self, addr, reg, buf):
        if self.fail or addr not in self.devices:
            raise OSError(19)  # ENODEV: no ACK
        data = self.devices[addr].read(reg, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, reg, buf):
        if self.fail or addr not in self.devices:
            raise OSError(19)
        self.devices[addr].write(reg, bytes(buf))


class FakePin:
    def __init__(self):
        self.v = 1
        self.low_count = 0

    def value(self, v=None):
        if v is None:
            return self.v
        if not v:
            self.low_count += 1
        self.v = v


class FakeSPI:
    """machine.SPI talking to one chip: first byte is the address byte (read 0x80, multi
    0x40), following bytes are data; the transfer ends when CS rises."""

    def __init__(self, chip, cs):
        self.chip = chip
        self.cs = cs
        self.hdr = None

    def write(self, buf):
        assert self.cs.v == 0, "SPI transfer with CS high"
        hdr = buf[0]
        if hdr & 0x80:
            self.hdr = hdr
        else:
            self.chip.write(hdr & 0x3F, bytes(buf[1:]))

    def readinto(self, buf):
        assert self.cs.v == 0 and self.hdr is not None
        reg = self.hdr & 0x3F
        multi = self.hdr & 0x40
        data = self.chip.read(reg, len(buf)) if multi or len(buf) == 1 else None
        if data is None:  # no multi bit: the same register repeatedly
            data = bytes(self.chip.read(reg, 1)[0] for _ in range(len(buf)))
        for i in range(len(buf)):
            buf[i] = data[i]
        self.hdr = None


def _le(v):
    v &= 0xFFFF
    return bytes((v & 0xFF, v >> 8))


def _be(v):
    v &= 0xFFFF
    return bytes((v >> 8, v & 0xFF))


class FakeADXL345:
    def __init__(self, devid=0xE5):
        self.regs = bytearray(64)
        self.regs[0x00] = devid
        self.regs[0x2C] = 0x0A
        self.fifo = []
        self.overrun = False
        self.writes = []

    def push(self, x, y, z):
        """The chip produced one sample (stream mode: a full FIFO drops its oldest)."""
        mode = self.regs[0x38] >> 6
        if mode == 0:
            self.fifo = [(x, y, z)]
            return
        if len(self.fifo) >= 32:
            self.fifo.pop(0)
            self.overrun = True
        self.fifo.append((x, y, z))

    def write(self, reg, data):
        for i, b in enumerate(data):
            self.writes.append((reg + i, b))
            self.regs[reg + i] = b
            if reg + i == 0x38 and b >> 6 == 0:
                self.fifo = []  # bypass mode clears the FIFO

    def read(self, reg, n):
        out = bytearray()
        popped = False
        r = reg
        while len(out) < n:
            if r == 0x30:
                wm = len(self.fifo) >= (self.regs[0x38] & 0x1F)
                v = (0x80 if self.fifo else 0) | (0x02 if wm else 0) | (0x01 if self.overrun else 0)
                out.append(v)
            elif r == 0x39:
                out.append(min(len(self.fifo), 32))
            elif 0x32 <= r <= 0x37:
                s = self.fifo[0] if self.fifo else (0, 0, 0)
                out += _le(s[(r - 0x32) // 2])[(r - 0x32) % 2:][:1]
                if r == 0x37 and self.fifo and not popped:
                    self.fifo.pop(0)
                    popped = True
                    self.overrun = False  # reading data clears the overrun condition
            else:
                out.append(self.regs[r])
            r += 1
        return bytes(out)


class FakeLIS3DH:
    """LIS3DH (ST DocID17530): WHO_AM_I 0x33, FIFO 32 in stream mode, data left-justified
    16-bit little endian, burst reads from OUT_X_L (0x28 | 0x80 on I2C) roll over 0x2D->0x28
    when the FIFO is enabled, FIFO_SRC: WTM 0x80, OVRN 0x40 (32 unread), EMPTY 0x20, FSS."""

    def __init__(self, whoami=0x33):
        self.regs = bytearray(128)
        self.regs[0x0F] = whoami
        self.fifo = []
        self.lost = 0

    def push(self, x, y, z):
        mode = self.regs[0x2E] >> 6
        if not self.regs[0x24] & 0x40 or mode == 0:
            self.fifo = [(x, y, z)]
            return
        if len(self.fifo) >= 32:
            self.fifo.pop(0)
            self.lost += 1
        self.fifo.append((x, y, z))

    def write(self, reg, data):
        reg &= 0x7F
        for i, b in enumerate(data):
            self.regs[reg + i] = b
            if reg + i == 0x2E and b >> 6 == 0:
                self.fifo = []

    def read(self, reg, n):
        inc = reg & 0x80
        reg &= 0x7F
        out = bytearray()
        r = reg
        while len(out) < n:
            if r == 0x2F:
                c = len(self.fifo)
                wtm = c >= (self.regs[0x2E] & 0x1F) and c > 0
                v = (0x80 if wtm else 0) | (0x40 if c >= 32 else 0) | (0x20 if c == 0 else 0)
                out.append(v | (c & 0x1F))
            elif 0x28 <= r <= 0x2D:
                s = self.fifo[0] if self.fifo else (0, 0, 0)
                out += _le(s[(r - 0x28) // 2])[(r - 0x28) % 2:][:1]
                if r == 0x2D and self.fifo:
                    self.fifo.pop(0)
            else:
                out.append(self.regs[r])
            if inc or n > 1:
                r += 1
                if r == 0x2E and self.regs[0x24] & 0x40:
                    r = 0x28  # FIFO enabled: the address rolls back to OUT_X_L
        return bytes(out)


class FakeMPU6050:
    """MPU-6050 (InvenSense RM-MPU-6000A): WHO_AM_I 0x68, big-endian data, 1024-byte FIFO
    read through FIFO_R_W (0x74) with the byte count in FIFO_COUNTH/L (0x72/0x73),
    INT_STATUS FIFO_OFLOW 0x10 cleared on read, USER_CTRL FIFO_EN 0x40 / FIFO_RESET 0x04."""

    def __init__(self, whoami=0x68):
        self.regs = bytearray(128)
        self.regs[0x75] = whoami
        self.regs[0x6B] = 0x40  # sleeps after power-up
        self.fifo = []  # bytes as ints (MicroPython's bytearray has no pop)
        self.oflow = False
        self.resets = 0

    def push(self, x, y, z):
        if not (self.regs[0x6A] & 0x40 and self.regs[0x23] & 0x08):
            return
        self.fifo += list(_be(x) + _be(y) + _be(z))
        if len(self.fifo) > 1024:
            del self.fifo[: len(self.fifo) - 1024]  # oldest bytes lost: frames misalign
            self.oflow = True

    def write(self, reg, data):
        for i, b in enumerate(data):
            r = reg + i
            if r == 0x6A and b & 0x04:
                self.fifo = []
                self.resets += 1
                b &= ~0x04
            if r == 0x6B and b & 0x80:
                b = 0x40
            self.regs[r] = b

    def read(self, reg, n):
        out = bytearray()
        r = reg
        while len(out) < n:
            if r == 0x74:
                out.append(self.fifo.pop(0) if self.fifo else 0)
                continue  # FIFO_R_W does not auto-increment
            if r == 0x72:
                out.append(len(self.fifo) >> 8)
            elif r == 0x73:
                out.append(len(self.fifo) & 0xFF)
            elif r == 0x3A:
                out.append(0x10 if self.oflow else 0)
                self.oflow = False
            else:
                out.append(self.regs[r])
            r += 1
        return bytes(out)
