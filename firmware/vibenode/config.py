# Node configuration (config.json on the node's flash): defaults, validation, clear errors.
#
# load(path) -> dict with every key present (defaults filled in). Any problem raises
# ConfigError naming the key path, e.g. "config: mqtt.port: must be an int in 1..65535".
# The schema lives in DEFAULTS + _RULES below; docs/firmware.md lists the keys.
import json

from vibenode.codec import valid_node_id


class ConfigError(ValueError):
    pass


DEFAULTS = {
    "node_id": None,  # required, [A-Za-z0-9_.-]{1,32}
    "uplink": "mqtt",  # "mqtt" | "serial"
    "mqtt": {
        "host": "127.0.0.1",
        "port": 1883,
        "prefix": "vibekit",
        "client_id": None,  # default: node_id
        "user": None,
        "password": None,
        "keepalive_s": 30,
        "timeout_s": 5.0,  # socket timeout: no call blocks longer
        "backoff_min_s": 0.5,
        "backoff_max_s": 30.0,
        "tls": None,  # {"ca": path, "cert": path, "key": path, "server_hostname": str}
    },
    "serial": {
        "hello_interval_s": 5.0,  # HELLO until the bridge answers, then never again
        "write_timeout_s": 2.0,
    },
    "window": {
        "n": 1024,  # samples per window (power of two)
        "odr_hz": 3200,
        "range_g": 16,
        "interval_s": 10.0,  # window start to window start; 0 = back to back
    },
    "features": {
        "bands": [[10, 100], [100, 500], [500, 1000], [1000, 1600]],
        "vel_band": [10.0, 1000.0],
        "hf_edge_hz": 1000.0,
        "iso_limits": [2.8, 4.5, 7.1],
    },
    "batch": {
        "max_records": 64,
        "max_bytes": 4096,
        "ack_timeout_s": 5.0,
    },
    "status_interval_s": 60.0,
    "journal": {
        "segment_bytes": 8192,
        "quota_bytes": 262144,
        "flush_records": 8,
        "flush_ms": 2000,
    },
    "wifi": None,  # {"ssid": str, "password": str, "hostname": str} (esp32, rp2)
    "ntp_host": None,  # e.g. "pool.ntp.org"; None: time comes from the bridge's acks
    "watchdog_s": 0,  # 0 = off; else machine.WDT timeout, fed only on progress
    "board": None,  # optional override of board.json's name, for the state message
}

_NUM = (int, float)

# key path -> (types, check(value) -> error text or None)
_RULES = {
    "node_id": (str, lambda v: None if valid_node_id(v) else "must be 1-32 chars of A-Z a-z 0-9 _ . -"),
    "uplink": (str, lambda v: None if v in ("mqtt", "serial") else 'must be "mqtt" or "serial"'),
    "mqtt.host": (str, lambda v: None if v else "must not be empty"),
    "mqtt.port": (int, lambda v: None if 1 <= v <= 65535 else "must be in 1..65535"),
    "mqtt.prefix": (str, lambda v: None if v and "+" not in v and "#" not in v and not v.endswith("/") else "must be a topic prefix without + # or a trailing /"),
    "mqtt.client_id": ((str, type(None)), None),
    "mqtt.user": ((str, type(None)), None),
    "mqtt.password": ((str, type(None)), None),
    "mqtt.keepalive_s": (int, lambda v: None if 0 <= v <= 65535 else "must be in 0..65535"),
    "mqtt.timeout_s": (_NUM, lambda v: None if 0.1 <= v <= 120 else "must be in 0.1..120"),
    "mqtt.backoff_min_s": (_NUM, lambda v: None if 0.05 <= v <= 600 else "must be in 0.05..600"),
    "mqtt.backoff_max_s": (_NUM, lambda v: None if 0.05 <= v <= 3600 else "must be in 0.05..3600"),
    "mqtt.tls": ((dict, type(None)), None),
    "serial.hello_interval_s": (_NUM, lambda v: None if v > 0 else "must be > 0"),
    "serial.write_timeout_s": (_NUM, lambda v: None if v > 0 else "must be > 0"),
    "window.n": (int, lambda v: None if 16 <= v <= 8192 and v & (v - 1) == 0 else "must be a power of two in 16..8192"),
    "window.odr_hz": (_NUM, lambda v: None if 1 <= v <= 100000 else "must be in 1..100000"),
    "window.range_g": (_NUM, lambda v: None if v > 0 else "must be > 0"),
    "window.interval_s": (_NUM, lambda v: None if 0 <= v <= 86400 else "must be in 0..86400"),
    "features.bands": (list, lambda v: _pairs(v, 8)),
    "features.vel_band": (list, lambda v: _pairs([v], 1)),
    "features.hf_edge_hz": (_NUM, lambda v: None if v > 0 else "must be > 0"),
    "features.iso_limits": (list, lambda v: None if len(v) == 3 and all(isinstance(x, _NUM) for x in v) and v[0] < v[1] < v[2] else "must be 3 increasing numbers (A/B, B/C, C/D)"),
    "batch.max_records": (int, lambda v: None if 1 <= v <= 255 else "must be in 1..255"),
    "batch.max_bytes": (int, lambda v: None if 256 <= v <= 16384 else "must be in 256..16384"),
    "batch.ack_timeout_s": (_NUM, lambda v: None if 0.1 <= v <= 600 else "must be in 0.1..600"),
    "status_interval_s": (_NUM, lambda v: None if v >= 0 else "must be >= 0 (0 = off)"),
    "journal.segment_bytes": (int, lambda v: None if v >= 512 else "must be >= 512"),
    "journal.quota_bytes": (int, lambda v: None if v >= 2048 else "must be >= 2048"),
    "journal.flush_records": (int, lambda v: None if v >= 1 else "must be >= 1"),
    "journal.flush_ms": (int, lambda v: None if v >= 0 else "must be >= 0"),
    "wifi": ((dict, type(None)), None),
    "ntp_host": ((str, type(None)), None),
    "watchdog_s": (_NUM, lambda v: None if v == 0 or 1 <= v <= 3600 else "must be 0 (off) or 1..3600"),
    "board": ((str, type(None)), None),
}


def _pairs(v, most):
    if not 1 <= len(v) <= most:
        return "must hold 1..%d [low, high] pairs" % most
    for p in v:
        if not (isinstance(p, list) and len(p) == 2 and isinstance(p[0], _NUM) and isinstance(p[1], _NUM) and 0 <= p[0] < p[1]):
            return "each entry must be [low_hz, high_hz] with 0 <= low < high"
    return None


def _merge(defaults, given, path, errors):
    out = {}
    for k in given:
        if k not in defaults:
            errors.append("%s%s: unknown key" % (path, k))
    for k, d in defaults.items():
        v = given.get(k, d)
        if isinstance(d, dict) and isinstance(v, dict):
            v = _merge(d, v, path + k + ".", errors)
        out[k] = v
    return out


def _get(cfg, dotted):
    v = cfg
    for part in dotted.split("."):
        v = v[part]
    return v


def validate(given):
    """Merge defaults into a parsed config dict and check every key; raise ConfigError."""
    if not isinstance(given, dict):
        raise ConfigError("config: must be a JSON object")
    errors = []
    cfg = _merge(DEFAULTS, given, "", errors)
    for key, (types, check) in _RULES.items():
        v = _get(cfg, key)
        if v is None and key == "node_id":
            errors.append("node_id: required")
            continue
        ok_type = isinstance(v, types) and not (v is True or v is False)
        if not ok_type:
            errors.append("%s: wrong type %s" % (key, type(v).__name__))
        elif check:
            err = check(v)
            if err:
                errors.append("%s: %s (got %r)" % (key, err, v))
    if not errors:
        m = cfg["mqtt"]
        if m["backoff_min_s"] > m["backoff_max_s"]:
            errors.append("mqtt.backoff_min_s: must be <= mqtt.backoff_max_s")
        if cfg["features"]["vel_band"][1] > cfg["window"]["odr_hz"] / 2:
            errors.append("features.vel_band: upper edge above Nyquist (window.odr_hz / 2)")
        tls = m["tls"]
        if tls is not None:
            for k in tls:
                if k not in ("ca", "cert", "key", "server_hostname", "verify"):
                    errors.append("mqtt.tls.%s: unknown key" % k)
        wifi = cfg["wifi"]
        if wifi is not None and not isinstance(wifi.get("ssid"), str):
            errors.append("wifi.ssid: required string when wifi is set")
        if m["client_id"] is None:
            m["client_id"] = cfg["node_id"]
    if errors:
        raise ConfigError("config: " + "; ".join(errors))
    return cfg


def load(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("config: cannot read %s (%s)" % (path, e))
    try:
        given = json.loads(text)
    except ValueError as e:
        raise ConfigError("config: %s is not valid JSON (%s)" % (path, e))
    return validate(given)
