# heap: 128K
# ADXL345, LIS3DH and MPU6050 drivers against register-level fakes (fakes_accel.py).
from array import array

import mptest
from fakes_accel import FakeADXL345, FakeI2C, FakeLIS3DH, FakeMPU6050, FakePin, FakeSPI
from drivers.adxl345 import ADXL345, ADXL345_I2C, ADXL345_SPI
from drivers.errors import SensorError
from drivers.lis3dh import LIS3DH_I2C, LIS3DH_SPI
from drivers.mpu6050 import MPU6050_I2C

X = array("h", range(256))
Y = array("h", range(256))
Z = array("h", range(256))


def i2c_with(addr, chip):
    bus = FakeI2C()
    bus.devices[addr] = chip
    return bus


# ---- ADXL345 -------------------------------------------------------------------------------


def test_adxl345_config_registers():
    chip = FakeADXL345()
    a = ADXL345_I2C(i2c_with(0x53, chip), odr_hz=3200, range_g=16)
    assert chip.regs[0x2C] == 0x0F  # 3200 Hz
    assert chip.regs[0x31] == 0x0B  # FULL_RES | +-16 g
    assert chip.regs[0x38] == 0x80 | 16  # stream mode, watermark 16
    assert chip.regs[0x2D] == 0x08  # measure
    assert a.scale_g == 1 / 256 and a.full_scale == 4095 and a.max_odr_hz == 3200
    a.configure(800, 2)
    assert chip.regs[0x2C] == 0x0D and chip.regs[0x31] == 0x08 and a.full_scale == 511
    mptest.raises(SensorError, a.configure, 3000, 2)
    mptest.raises(SensorError, a.configure, 800, 3)


def test_adxl345_wrong_id_and_absent():
    e = mptest.raises(SensorError, ADXL345_I2C, i2c_with(0x53, FakeADXL345(devid=0x12)))
    msg = str(e)
    assert "ADXL345" in msg and "i2c@0x53" in msg and "0x12" in msg, msg
    e = mptest.raises(SensorError, ADXL345_I2C, FakeI2C())
    assert "ADXL345" in str(e) and "i2c@0x53" in str(e), str(e)


def test_adxl345_fifo_data_and_scaling():
    chip = FakeADXL345()
    a = ADXL345_I2C(i2c_with(0x53, chip))
    samples = [(256, -256, 4095), (-4096, 1, -1), (0, 100, -100)]
    for s in samples:
        chip.push(*s)
    assert a.read_fifo_into(X, Y, Z, 10, 2) == 2  # max_count respected
    assert (X[10], Y[10], Z[10]) == samples[0]
    assert (X[11], Y[11], Z[11]) == samples[1]
    assert a.read_fifo_into(X, Y, Z, 12, 50) == 1 and (X[12], Y[12], Z[12]) == samples[2]
    assert a.read_fifo_into(X, Y, Z, 13, 50) == 0
    assert a.overruns == 0
    assert X[10] * a.scale_g == 1.0


def test_adxl345_watermark_and_overrun():
    chip = FakeADXL345()
    a = ADXL345_I2C(i2c_with(0x53, chip))
    for i in range(15):
        chip.push(i, 0, 0)
    assert not chip.read(0x30, 1)[0] & 0x02
    chip.push(15, 0, 0)
    assert chip.read(0x30, 1)[0] & 0x02  # watermark reached at the configured 16
    for i in range(16, 40):
        chip.push(i, 0, 0)
    n = a.read_fifo_into(X, Y, Z, 0, 100)
    assert n == 32 and a.overruns == 1
    assert X[0] == 8 and X[31] == 39  # the 8 oldest were lost
    chip.push(1, 2, 3)
    assert a.read_fifo_into(X, Y, Z, 0, 100) == 1 and a.overruns == 1


def test_adxl345_spi():
    chip = FakeADXL345()
    cs = FakePin()
    a = ADXL345_SPI(FakeSPI(chip, cs), cs)
    assert chip.regs[0x2C] == 0x0F
    chip.push(-2, 3, 300)
    chip.push(7, -8, 9)
    assert a.read_fifo_into(X, Y, Z, 0, 10) == 2
    assert (X[0], Y[0], Z[0], X[1], Y[1], Z[1]) == (-2, 3, 300, 7, -8, 9)
    assert cs.v == 1 and cs.low_count > 5
    e = mptest.raises(SensorError, ADXL345_SPI, FakeSPI(FakeADXL345(0x00), cs), cs)
    assert "spi" in str(e) and "0x00" in str(e)


def test_adxl345_bus_failure_later_raises():
    bus = i2c_with(0x53, FakeADXL345())
    a = ADXL345_I2C(bus)
    bus.fail = True
    mptest.raises(SensorError, a.read_fifo_into, X, Y, Z, 0, 10)


# ---- LIS3DH --------------------------------------------------------------------------------


def test_lis3dh_config_and_scaling():
    chip = FakeLIS3DH()
    a = LIS3DH_I2C(i2c_with(0x18, chip), odr_hz=1344, range_g=16)
    assert chip.regs[0x20] == 0x97  # 1344 Hz, normal, XYZ on
    assert chip.regs[0x23] == 0xB8  # BDU, +-16 g, HR
    assert chip.regs[0x24] & 0x40 and chip.regs[0x2E] == 0x80 | 16
    assert a.scale_g == 0.012 / 16 and a.full_scale == 32752
    a.configure(5376, 2)  # low power 8 bit
    assert chip.regs[0x20] == 0x9F and chip.regs[0x23] == 0x80
    assert a.scale_g == 0.016 / 256 and a.full_scale == 127 << 8
    mptest.raises(SensorError, a.configure, 3200, 2)
    e = mptest.raises(SensorError, LIS3DH_I2C, i2c_with(0x18, FakeLIS3DH(0x44)))
    assert "LIS3DH" in str(e) and "0x44" in str(e) and "i2c@0x18" in str(e)


def test_lis3dh_burst_fifo_and_overrun():
    chip = FakeLIS3DH()
    a = LIS3DH_I2C(i2c_with(0x18, chip), odr_hz=1344, range_g=2)
    for i in range(5):
        chip.push(i * 16, -i * 16, 1000 * 16)
    assert a.read_fifo_into(X, Y, Z, 0, 3) == 3
    assert list(X[:3]) == [0, 16, 32] and list(Y[:3]) == [0, -16, -32] and Z[2] == 16000
    assert a.read_fifo_into(X, Y, Z, 3, 10) == 2 and X[4] == 64
    assert Z[4] * a.scale_g == 1.0  # 1000 mg at 1 mg/digit
    for i in range(40):
        chip.push(i, 0, 0)
    assert a.read_fifo_into(X, Y, Z, 0, 100) == 32 and a.overruns == 1 and X[0] == 8
    cs = FakePin()
    chip2 = FakeLIS3DH()
    b = LIS3DH_SPI(FakeSPI(chip2, cs), cs)
    chip2.push(-5, 6, -7)
    assert b.read_fifo_into(X, Y, Z, 0, 10) == 1 and (X[0], Y[0], Z[0]) == (-5, 6, -7)


# ---- MPU6050 -------------------------------------------------------------------------------


def test_mpu6050_config_and_data():
    chip = FakeMPU6050()
    a = MPU6050_I2C(i2c_with(0x68, chip), odr_hz=1000, range_g=16)
    assert chip.regs[0x6B] == 0x01 and chip.regs[0x19] == 7 and chip.regs[0x1A] == 0
    assert chip.regs[0x1C] == 0x18 and chip.regs[0x23] == 0x08 and chip.regs[0x6A] & 0x40
    assert a.scale_g == 1 / 2048 and a.max_odr_hz == 1000
    a.configure(250, 2)
    assert chip.regs[0x19] == 31 and chip.regs[0x1C] == 0 and a.scale_g == 1 / 16384
    mptest.raises(SensorError, a.configure, 3200, 2)
    for i in range(70):  # more than one 32-sample burst
        chip.push(i * 100 - 3000, -i, 16384)
    assert a.read_fifo_into(X, Y, Z, 0, 100) == 70
    assert X[0] == -3000 and X[69] == 3900 and Y[69] == -69 and Z[5] * a.scale_g == 1.0
    e = mptest.raises(SensorError, MPU6050_I2C, i2c_with(0x68, FakeMPU6050(0x70)))
    assert "MPU6050" in str(e) and "0x70" in str(e)


def test_mpu6050_overflow_resets_fifo():
    chip = FakeMPU6050()
    a = MPU6050_I2C(i2c_with(0x68, chip))
    for i in range(200):  # 1200 bytes > 1024: oldest bytes dropped, frames misaligned
        chip.push(i, i, i)
    r0 = chip.resets
    assert a.read_fifo_into(X, Y, Z, 0, 256) == 0
    assert a.overruns == 1 and chip.resets == r0 + 1 and len(chip.fifo) == 0
    chip.push(11, -12, 13)
    assert a.read_fifo_into(X, Y, Z, 0, 256) == 1 and (X[0], Y[0], Z[0]) == (11, -12, 13)


def test_factory_style_construction():
    # vibenode.sensors builds drivers as cls(port.bus(name), **board_params)
    chip = FakeADXL345()
    a = ADXL345(i2c_with(0x1D, chip), addr=0x1D, odr_hz=1600, range_g=8)
    assert a.dev.name == "i2c@0x1D" and chip.regs[0x2C] == 0x0E
    cs = FakePin()
    b = ADXL345(FakeSPI(FakeADXL345(), cs), cs=cs)
    assert b.dev.name == "spi"
    e = mptest.raises(SensorError, lambda: ADXL345(FakeSPI(FakeADXL345(), cs), cs=5))
    assert "pin object" in str(e)


mptest.main(globals())
