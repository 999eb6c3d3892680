# ESP32 port: the shared MCU code plus the chip's own temperature sensor and buses.
import esp32
import machine

from ports._board import BoardPort


class Port(BoardPort):
    name = "esp32"

    def mcu_temp_c(self):
        try:
            return esp32.mcu_temperature()  # ESP32-S2/S3/C3
        except AttributeError:
            return (esp32.raw_temperature() - 32) / 1.8  # classic ESP32, Fahrenheit

    def bus(self, name):
        # board.json "buses": {"spi1": {"kind": "spi", "id": 1, "sck": 18, "mosi": 23, "miso": 19,
        # "baudrate": 5000000}, "i2c0": {"kind": "i2c", "id": 0, "scl": 22, "sda": 21}}
        b = self.buses[name]
        if b["kind"] == "spi":
            return machine.SPI(b["id"], baudrate=b.get("baudrate", 5000000), polarity=1, phase=1,
                               sck=machine.Pin(b["sck"]), mosi=machine.Pin(b["mosi"]), miso=machine.Pin(b["miso"]))
        return machine.I2C(b["id"], scl=machine.Pin(b["scl"]), sda=machine.Pin(b["sda"]), freq=b.get("freq", 400000))

    def load_board(self):
        board = BoardPort.load_board(self)
        self.buses = board.get("buses", {})
        return board
