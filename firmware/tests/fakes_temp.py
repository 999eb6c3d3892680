# Fakes of temperature sensors at the bus level: a 1-Wire bus with DS18B20s (ROM commands,
# Convert T with its conversion time, scratchpad with CRC) and an MCP9808 register map.
import time

from drivers.ds18b20 import crc8


class FakeDS18B20:
    def __init__(self, temp_c=21.5, conv_ms=750, rom=None):
        self.temp_c = temp_c
        self.conv_ms = conv_ms
        self.rom = rom or self.make_rom(1)
        self.sp = bytearray(9)
        self._store(85.0)  # power-on value
        self.converting_since = None
        self.conversions = 0
        self.corrupt = False

    @staticmethod
    def make_rom(serial):
        r = bytearray(8)
        r[0] = 0x28
        r[1] = serial
        r[7] = crc8(r, 7)
        return bytes(r)

    def _store(self, t):
        raw = int(round(t * 16)) & 0xFFFF
        sp = self.sp
        sp[0] = raw & 0xFF
        sp[1] = raw >> 8
        sp[2] = 0x4B
        sp[3] = 0x46
        sp[4] = 0x7F  # 12-bit
        sp[5] = 0xFF
        sp[6] = 0x0C
        sp[7] = 0x10
        sp[8] = crc8(sp, 8)

    def convert(self):
        self.converting_since = time.ticks_ms()
        self.conversions += 1

    def scratchpad(self):
        if self.converting_since is not None:
            if time.ticks_diff(time.ticks_ms(), self.converting_since) >= self.conv_ms:
                self._store(self.temp_c)
                self.converting_since = None
        out = bytearray(self.sp)
        if self.corrupt:
            out[0] ^= 0x01
        return out


class FakeOneWire:
    """onewire.OneWire: reset() -> presence, writebyte/write/readinto."""

    def __init__(self, *devices):
        self.devices = list(devices)
        self.state = "idle"
        self.selected = []
        self.rom_buf = bytearray()
        self.out = bytearray()

    def reset(self, required=False):
        self.state = "rom"
        self.selected = []
        present = bool(self.devices)
        if required and not present:
            raise OSError(5)
        return present

    def writebyte(self, b):
        if self.state == "rom":
            if b == 0xCC:
                self.selected = list(self.devices)
                self.state = "func"
            elif b == 0x55:
                self.state = "match"
                self.rom_buf = bytearray()
        elif self.state == "func":
            if b == 0x44:
                for d in self.selected:
                    d.convert()
            elif b == 0xBE:
                if len(self.selected) == 1:
                    self.out = self.selected[0].scratchpad()
                else:  # nobody (or a wired-AND of several) answers: all ones
                    self.out = bytearray(b"\xff" * 9)
            self.state = "data"

    def write(self, buf):
        for b in buf:
            if self.state == "match":
                self.rom_buf.append(b)
                if len(self.rom_buf) == 8:
                    self.selected = [d for d in self.devices if d.rom == bytes(self.rom_buf)]
                    self.state = "func"
            else:
                self.writebyte(b)

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.out[i] if i < len(self.out) else 0xFF


class FakeMCP9808:
    def __init__(self, temp_c=23.0, manuf=0x0054, dev=0x0400):
        self.regs = {0x06: manuf, 0x07: dev, 0x08: 0x00, 0x05: 0}
        self.set(temp_c)

    def set(self, t):
        raw = int(round(t * 16)) & 0x1FFF
        self.regs[0x05] = 0xE000 | raw if t < 0 else raw  # flag bits set: must be masked

    def read(self, reg, n):
        v = self.regs.get(reg, 0)
        return bytes(((v >> 8) & 0xFF, v & 0xFF))[:n]

    def write(self, reg, data):
        self.regs[reg] = data[0]
