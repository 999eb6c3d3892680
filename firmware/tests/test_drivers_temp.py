# DS18B20 (1-Wire), MCP9808 (I2C) and MCU temperature drivers against bus-level fakes.
import time

import mptest
from fakes_accel import FakeI2C
from fakes_temp import FakeDS18B20, FakeMCP9808, FakeOneWire
from drivers.ds18b20 import DS18B20, crc8
from drivers.errors import SensorError
from drivers.mcp9808 import MCP9808_I2C
from drivers.mcu_temp import McuTemp


def test_crc8_datasheet_example():
    # Maxim AN27 example ROM: 02 1C B8 01 00 00 00 / CRC A2
    assert crc8(bytes((0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00)), 7) == 0xA2


def test_ds18b20_never_blocks_after_first_reading():
    chip = FakeDS18B20(temp_c=21.5, conv_ms=40)
    s = DS18B20(FakeOneWire(chip), conv_ms=40)
    assert chip.conversions == 1
    t0 = time.ticks_ms()
    assert s.read_c() == 21.5  # the first reading waits for its conversion
    assert time.ticks_diff(time.ticks_ms(), t0) >= 30
    assert chip.conversions == 2
    chip.temp_c = -10.125
    t0 = time.ticks_ms()
    assert s.read_c() == 21.5  # conversion still running: the last value, no waiting
    assert time.ticks_diff(time.ticks_ms(), t0) < 10
    time.sleep_ms(45)
    assert s.read_c() == -10.125  # negative two's complement, 1/16 C


def test_ds18b20_errors():
    e = mptest.raises(SensorError, DS18B20, FakeOneWire())
    assert "DS18B20" in str(e) and "presence" in str(e)
    chip = FakeDS18B20(conv_ms=0)
    s = DS18B20(FakeOneWire(chip), conv_ms=0)
    chip.corrupt = True
    e = mptest.raises(SensorError, s.read_c)
    assert "CRC" in str(e)
    bad = bytearray(FakeDS18B20.make_rom(3))
    bad[0] = 0x10  # DS18S20 family
    mptest.raises(SensorError, DS18B20, FakeOneWire(chip), bytes(bad))


def test_ds18b20_match_rom_on_shared_bus():
    a = FakeDS18B20(temp_c=30.0, conv_ms=0, rom=FakeDS18B20.make_rom(1))
    b = FakeDS18B20(temp_c=40.0, conv_ms=0, rom=FakeDS18B20.make_rom(2))
    bus = FakeOneWire(a, b)
    sb = DS18B20(bus, rom=b.rom, conv_ms=0)
    assert sb.read_c() == 40.0
    # SKIP ROM with two devices: both answer, the data is garbage -> an error, not a value
    mptest.raises(SensorError, DS18B20, bus)


def test_mcp9808():
    chip = FakeMCP9808(23.0625)
    bus = FakeI2C()
    bus.devices[0x18] = chip
    s = MCP9808_I2C(bus)
    assert chip.regs[0x08] == 0x03
    assert s.read_c() == 23.0625
    chip.set(-5.25)
    assert s.read_c() == -5.25
    bus.fail = True
    mptest.raises(SensorError, s.read_c)
    bus2 = FakeI2C()
    bus2.devices[0x18] = FakeMCP9808(manuf=0x1234)
    e = mptest.raises(SensorError, MCP9808_I2C, bus2)
    assert "MCP9808" in str(e) and "0x1234" in str(e) and "i2c@0x18" in str(e)
    e = mptest.raises(SensorError, MCP9808_I2C, FakeI2C())
    assert "MCP9808" in str(e) and "no answer" in str(e)


class FakeADC:
    def __init__(self, raw):
        self.raw = raw

    def read_u16(self):
        return self.raw


def test_mcu_temp():
    # RP2040: 0.706 V reads 27 C
    t = McuTemp(adc=FakeADC(int(0.706 / 3.3 * 65535 + 0.5))).read_c()
    assert abs(t - 27.0) < 0.05, t
    assert McuTemp(read=lambda: 41.5).read_c() == 41.5

    def broken():
        raise OSError(5)

    mptest.raises(SensorError, McuTemp(read=broken).read_c)
    mptest.raises(SensorError, McuTemp(read=lambda: 500.0).read_c)
    mptest.raises(ValueError, McuTemp)


mptest.main(globals())
