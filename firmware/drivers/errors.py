# Sensor errors shared by every driver. The node catches SensorError per channel and sets the
# channel's fault flag (ACCEL_FAULT / TEMP_FAULT) instead of stopping.


class SensorError(Exception):
    """A sensor is absent, answered with the wrong identity, or failed while running."""


def check_id(chip, bus_name, what, got, expected):
    """Raise SensorError naming the chip, the bus and the id read when got != expected."""
    if got != expected:
        raise SensorError(
            "%s: wrong %s on %s: read 0x%02X, expected 0x%02X (absent or other chip?)"
            % (chip, what, bus_name, got, expected)
        )
