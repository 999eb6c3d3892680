# The MCU's own temperature sensor, as a last-resort or board temperature channel.
#   RP2040:  McuTemp(adc=machine.ADC(4))           (datasheet 4.9.5: 27 - (V - 0.706) / 0.001721)
#   ESP32:   McuTemp(read=esp32.mcu_temperature)   (S2/S3/C3; returns degrees C)
#   CircuitPython: McuTemp(read=lambda: microcontroller.cpu.temperature)
#   or McuTemp(source) with source an ADC (read_u16), a callable, or a port with mcu_temp_c().
# The port passes the source in; this module imports no hardware module.
from drivers.errors import SensorError


class McuTemp:
    name = "McuTemp"

    def __init__(self, source=None, read=None, adc=None, vref=3.3):
        if source is not None:
            if hasattr(source, "read_u16"):
                adc = source
            elif hasattr(source, "mcu_temp_c"):
                read = source.mcu_temp_c
            elif callable(source):
                read = source
        if (read is None) == (adc is None):
            raise ValueError("McuTemp needs exactly one of read= or adc=")
        self._read = read
        self.adc = adc
        self.vref = vref

    def read_c(self):
        try:
            if self.adc is not None:
                v = self.adc.read_u16() * self.vref / 65535
                t = 27.0 - (v - 0.706) / 0.001721
            else:
                t = self._read()
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise SensorError("McuTemp: read failed: %s" % e)
        if t is None or t != t or not -60.0 <= t <= 150.0:
            raise SensorError("McuTemp: implausible reading %r" % (t,))
        return float(t)
