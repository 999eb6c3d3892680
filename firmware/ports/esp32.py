# ESP32 port: the shared MCU code (buses in ports/_board.py) plus the chip's temperature sensor.
import esp32

from ports._board import BoardPort


class Port(BoardPort):
    name = "esp32"

    def mcu_temp_c(self):
        try:
            return esp32.mcu_temperature()  # ESP32-S2/S3/C3
        except AttributeError:
            return (esp32.raw_temperature() - 32) / 1.8  # classic ESP32, Fahrenheit
