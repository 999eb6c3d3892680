# Sensor factory: board.json sensor entries -> driver instances.
#
# A board names its sensors either as a dict  {"accel": {...}, "temp": {...}}  or as a list
# [{"role": "accel", ...}, ...] ("role", "kind" or "type"; "accelerometer"/"temperature"
# accepted). Each entry: {"driver": name, "bus": optional bus name for port.bus(),
# "params": {constructor keywords}}; keys other than driver/bus/role/params are taken as
# constructor keywords too. New chips: one line in the tables below.
ACCEL_DRIVERS = {
    "sim_accel": ("drivers.sim_accel", "SimAccel"),
    "sim": ("drivers.sim_accel", "SimAccel"),
    "adxl345": ("drivers.adxl345", "ADXL345"),
    "lis3dh": ("drivers.lis3dh", "LIS3DH"),
    "mpu6050": ("drivers.mpu6050", "MPU6050"),
    "adxl355": ("drivers.adxl355", "ADXL355"),
}
TEMP_DRIVERS = {
    "sim_temp": ("drivers.sim_temp", "SimTemp"),
    "sim": ("drivers.sim_temp", "SimTemp"),
    "ds18b20": ("drivers.ds18b20", "DS18B20"),
    "mcp9808": ("drivers.mcp9808", "MCP9808"),
    "mcu": ("drivers.mcu_temp", "McuTemp"),
    "mcu_temp": ("drivers.mcu_temp", "McuTemp"),
}
_ROLES = {"accel": "accel", "accelerometer": "accel", "temp": "temp", "temperature": "temp"}
_META = ("driver", "bus", "role", "kind", "type", "params", "name")


class BoardError(ValueError):
    pass


def sensor_specs(board):
    """{'accel': spec, 'temp': spec or None} from a board dict."""
    raw = board.get("sensors")
    out = {"accel": None, "temp": None}
    if isinstance(raw, dict):
        items = [(k, v) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(e.get("role") or e.get("kind") or e.get("type"), e) for e in raw]
    else:
        raise BoardError("board: 'sensors' must be a dict or a list")
    for role, spec in items:
        r = _ROLES.get(role)
        if r is None:
            continue  # other sensors are not ours (yet)
        if not isinstance(spec, dict) or "driver" not in spec:
            raise BoardError("board: sensor %r needs a 'driver'" % role)
        if out[r] is None:
            out[r] = spec
    if out["accel"] is None:
        raise BoardError("board: no accelerometer in 'sensors'")
    return out


def _kwargs(spec):
    kw = {}
    for k, v in spec.items():
        if k not in _META:
            kw[k] = v
    for k, v in (spec.get("params") or {}).items():
        kw[k] = v
    if "tones" in kw:  # JSON lists -> the tuples the simulator documents
        kw["tones"] = tuple(tuple(t) for t in kw["tones"])
    if "dc_g" in kw:
        kw["dc_g"] = tuple(kw["dc_g"])
    return kw


def _make(table, spec, port, what):
    name = spec["driver"]
    entry = table.get(name)
    if entry is None:
        raise BoardError("board: unknown %s driver %r (known: %s)" % (what, name, ", ".join(sorted(table))))
    mod = __import__(entry[0], None, None, [entry[1]])
    cls = getattr(mod, entry[1])
    kw = _kwargs(spec)
    bus = spec.get("bus")
    if bus is not None:
        return cls(port.bus(bus), **kw)
    return cls(**kw)


def make_accel(spec, port):
    return _make(ACCEL_DRIVERS, spec, port, "accelerometer")


def make_temp(spec, port):
    if spec is None:
        return None
    return _make(TEMP_DRIVERS, spec, port, "temperature")
