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


def probe_id(chip, dev, reg, what, expected, buf):
    """Read an identity register at construction: SensorError names chip, bus and value."""
    try:
        dev.read_into(reg, buf)
    except SensorError as e:
        raise SensorError("%s: no answer on %s (%s)" % (chip, dev.name, e))
    except OSError as e:
        raise SensorError("%s: no answer on %s (%s)" % (chip, dev.name, e))
    check_id(chip, dev.name, what, buf[0], expected)


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = ("check_id", "probe_id")
