# RP2040 / Pico W port: the shared MCU code plus ADC channel 4 (the die temperature) and buses.
import machine

from ports._board import BoardPort


class Port(BoardPort):
    name = "rp2"

    def mcu_temp_c(self):
        v = machine.ADC(4).read_u16() * 3.3 / 65535
        return 27 - (v - 0.706) / 0.001721  # RP2040 datasheet 4.9.5

    def bus(self, name):
        b = self.buses[name]
        if b["kind"] == "spi":
            return machine.SPI(b["id"], baudrate=b.get("baudrate", 5000000), polarity=1, phase=1,
                               sck=machine.Pin(b["sck"]), mosi=machine.Pin(b["mosi"]), miso=machine.Pin(b["miso"]))
        return machine.I2C(b["id"], scl=machine.Pin(b["scl"]), sda=machine.Pin(b["sda"]), freq=b.get("freq", 400000))

    def load_board(self):
        board = BoardPort.load_board(self)
        self.buses = board.get("buses", {})
        return board
