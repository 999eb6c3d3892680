# Register-bus adapters: a driver talks to `read_into(reg, buf)` / `write(reg, value)` and does
# not care whether the chip sits on I2C or SPI, MicroPython or CircuitPython.
#
# The bus object itself is passed in by the port layer; nothing here imports machine or busio.
# Buffers are allocated once; a read fills the caller's buffer (a memoryview slice made at
# init time), so a FIFO drain allocates nothing.
from drivers.errors import SensorError


class I2CDevice:
    """MicroPython machine.I2C / SoftI2C: readfrom_mem_into + writeto_mem."""

    def __init__(self, i2c, addr, auto_inc=0):
        self.i2c = i2c
        self.addr = addr
        self.auto_inc = auto_inc  # register bit that enables address auto-increment (LIS3DH)
        self._one = bytearray(1)
        self.name = "i2c@0x%02X" % addr

    def read_into(self, reg, buf):
        if len(buf) > 1:
            reg |= self.auto_inc
        try:
            self.i2c.readfrom_mem_into(self.addr, reg, buf)
        except OSError as e:
            raise SensorError("%s: read of reg 0x%02X failed: %s" % (self.name, reg, e))

    def write(self, reg, value):
        self._one[0] = value
        try:
            self.i2c.writeto_mem(self.addr, reg, self._one)
        except OSError as e:
            raise SensorError("%s: write of reg 0x%02X failed: %s" % (self.name, reg, e))


class CPI2CDevice:
    """CircuitPython busio.I2C: try_lock / writeto_then_readfrom / writeto / unlock."""

    def __init__(self, i2c, addr, auto_inc=0):
        self.i2c = i2c
        self.addr = addr
        self.auto_inc = auto_inc
        self._reg = bytearray(1)
        self._two = bytearray(2)
        self.name = "i2c@0x%02X" % addr

    def _lock(self):
        n = 0
        while not self.i2c.try_lock():
            n += 1
            if n > 10000:
                raise SensorError("%s: bus stays locked" % self.name)

    def read_into(self, reg, buf):
        self._reg[0] = reg | (self.auto_inc if len(buf) > 1 else 0)
        self._lock()
        try:
            self.i2c.writeto_then_readfrom(self.addr, self._reg, buf)
        except OSError as e:
            raise SensorError("%s: read of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self.i2c.unlock()

    def write(self, reg, value):
        self._two[0] = reg
        self._two[1] = value
        self._lock()
        try:
            self.i2c.writeto(self.addr, self._two)
        except OSError as e:
            raise SensorError("%s: write of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self.i2c.unlock()


class SPIDevice:
    """MicroPython machine.SPI plus a chip-select Pin (or any object with value(0/1)).

    read_flag / multi_flag: the bits a chip wants in the address byte for a read and for an
    auto-incrementing multi-byte transfer (ADXL345 and LIS3DH: 0x80 and 0x40).
    """

    def __init__(self, spi, cs, read_flag=0x80, multi_flag=0x40, name="spi"):
        self.spi = spi
        self.cs = cs
        self.read_flag = read_flag
        self.multi_flag = multi_flag
        self._hdr = bytearray(1)
        self._two = bytearray(2)
        self.name = name
        cs.value(1)

    def read_into(self, reg, buf):
        self._hdr[0] = reg | self.read_flag | (self.multi_flag if len(buf) > 1 else 0)
        self.cs.value(0)
        try:
            self.spi.write(self._hdr)
            self.spi.readinto(buf)
        except OSError as e:
            raise SensorError("%s: read of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self.cs.value(1)

    def write(self, reg, value):
        self._two[0] = reg
        self._two[1] = value
        self.cs.value(0)
        try:
            self.spi.write(self._two)
        except OSError as e:
            raise SensorError("%s: write of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self.cs.value(1)


class CPSPIDevice:
    """CircuitPython busio.SPI plus a digitalio.DigitalInOut chip select (cs.value = bool)."""

    def __init__(self, spi, cs, baudrate=5000000, polarity=1, phase=1,
                 read_flag=0x80, multi_flag=0x40, name="spi"):
        self.spi = spi
        self.cs = cs
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.read_flag = read_flag
        self.multi_flag = multi_flag
        self._hdr = bytearray(1)
        self._two = bytearray(2)
        self.name = name
        cs.value = True

    def _begin(self):
        n = 0
        while not self.spi.try_lock():
            n += 1
            if n > 10000:
                raise SensorError("%s: bus stays locked" % self.name)
        self.spi.configure(baudrate=self.baudrate, polarity=self.polarity, phase=self.phase)
        self.cs.value = False

    def _end(self):
        self.cs.value = True
        self.spi.unlock()

    def read_into(self, reg, buf):
        self._hdr[0] = reg | self.read_flag | (self.multi_flag if len(buf) > 1 else 0)
        self._begin()
        try:
            self.spi.write(self._hdr)
            self.spi.readinto(buf)
        except OSError as e:
            raise SensorError("%s: read of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self._end()

    def write(self, reg, value):
        self._two[0] = reg
        self._two[1] = value
        self._begin()
        try:
            self.spi.write(self._two)
        except OSError as e:
            raise SensorError("%s: write of reg 0x%02X failed: %s" % (self.name, reg, e))
        finally:
            self._end()


def as_device(bus, addr=None, cs=None, auto_inc=0, read_flag=0x80, multi_flag=0x40):
    """A register device for whatever the port handed over: an existing device (returned
    as is), machine.I2C / busio.I2C (with addr), or machine.SPI / busio.SPI with a
    chip-select pin object (cs)."""
    if hasattr(bus, "read_into") and hasattr(bus, "name"):
        return bus
    if cs is not None:
        if isinstance(cs, int):
            raise SensorError("SPI chip select must be a pin object, got the number %d" % cs)
        if hasattr(bus, "try_lock"):
            return CPSPIDevice(bus, cs, read_flag=read_flag, multi_flag=multi_flag)
        return SPIDevice(bus, cs, read_flag, multi_flag)
    if hasattr(bus, "readfrom_mem_into"):
        return I2CDevice(bus, addr, auto_inc)
    if hasattr(bus, "writeto_then_readfrom"):
        return CPI2CDevice(bus, addr, auto_inc)
    raise SensorError("unsupported bus object %r (need I2C, SPI + cs, or a register device)"
                      % (bus,))
