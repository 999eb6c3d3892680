# Node configuration (config.json on the node's flash): defaults, validation, clear errors.
#
# load(path) -> dict with every key present (defaults filled in). Any problem raises
# ConfigError naming the key path, e.g. "config: mqtt.port: must be an int in 1..65535".
# The schema lives in DEFAULTS + _rules() below; docs/firmware.md lists the keys.
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
        "backfill_rps": 100,  # backlog records per second at most (0 = no limit); live goes first
    },
    "status_interval_s": 60.0,
    "journal": {
        "segment_bytes": 8192,
        "quota_bytes": 262144,
        "flush_records": 8,
        "flush_ms": 2000,
        "stage_bytes": 4096,  # RAM staging buffer (one littlefs block holds one full flush)
        "offline_flush_records": 21,  # while the link is down: fill a block per flush
        "offline_flush_ms": 60000,
    },
    "wifi": None,  # {"ssid": str, "password": str, "hostname": str} (esp32, rp2)
    "ntp_host": None,  # e.g. "pool.ntp.org"; None: time comes from the bridge's acks
    "watchdog_s": 0,  # 0 = off; else machine.WDT timeout, fed only on progress
    "board": None,  # optional override of board.json's name, for the state message
}

def _rules():
    """(key path, types, low, high (None: no bound)); special checks follow in validate().
    Built when called: the validator's names stay out of the interned strings (qstrs)."""
    num = (int, float)
    opt_str = (str, type(None))
    opt_dict = (dict, type(None))
    return (
        ("node_id", str, None, None),
        ("uplink", str, None, None),
        ("mqtt.host", str, None, None),
        ("mqtt.port", int, 1, 65535),
        ("mqtt.prefix", str, None, None),
        ("mqtt.client_id", opt_str, None, None),
        ("mqtt.user", opt_str, None, None),
        ("mqtt.password", opt_str, None, None),
        ("mqtt.keepalive_s", int, 0, 65535),
        ("mqtt.timeout_s", num, 0.1, 120),
        ("mqtt.backoff_min_s", num, 0.05, 600),
        ("mqtt.backoff_max_s", num, 0.05, 3600),
        ("mqtt.tls", opt_dict, None, None),
        ("serial.hello_interval_s", num, 0.1, 3600),
        ("serial.write_timeout_s", num, 0.01, 600),
        ("window.n", int, 16, 8192),
        ("window.odr_hz", num, 1, 100000),
        ("window.range_g", num, 1, 400),
        ("window.interval_s", num, 0, 86400),
        ("features.bands", list, None, None),
        ("features.vel_band", list, None, None),
        ("features.hf_edge_hz", num, 0.001, 100000),
        ("features.iso_limits", list, None, None),
        ("batch.max_records", int, 1, 255),
        ("batch.max_bytes", int, 256, 16384),
        ("batch.ack_timeout_s", num, 0.1, 600),
        ("batch.backfill_rps", num, 0, 1000000),
        ("status_interval_s", num, 0, 86400),
        ("journal.segment_bytes", int, 512, 1 << 24),
        ("journal.quota_bytes", int, 2048, 1 << 30),
        ("journal.flush_records", int, 1, 10000),
        ("journal.flush_ms", int, 0, 3600000),
        ("journal.stage_bytes", int, 64, 65536),
        ("journal.offline_flush_records", int, 1, 10000),
        ("journal.offline_flush_ms", int, 0, 3600000),
        ("wifi", opt_dict, None, None),
        ("ntp_host", opt_str, None, None),
        ("watchdog_s", num, 0, 3600),
        ("board", opt_str, None, None),
    )


def _pairs(v, most):
    if not 1 <= len(v) <= most:
        return "must hold 1..%d [low, high] pairs" % most
    for p in v:
        if not (isinstance(p, list) and len(p) == 2 and isinstance(p[0], (int, float)) and isinstance(p[1], (int, float)) and 0 <= p[0] < p[1]):
            return "each entry must be [low_hz, high_hz] with 0 <= low < high"
    return None


def _special(cfg):
    """(key, message or None) checks beyond type and range."""
    m = cfg["mqtt"]
    w = cfg["window"]
    f = cfg["features"]
    p = m["prefix"]
    lim = f["iso_limits"]
    n = w["n"]
    yield "node_id", None if valid_node_id(cfg["node_id"]) else "must be 1-32 chars of A-Z a-z 0-9 _ . -"
    yield "uplink", None if cfg["uplink"] in ("mqtt", "serial") else 'must be "mqtt" or "serial"'
    yield "mqtt.prefix", None if p and "+" not in p and "#" not in p and p[-1] != "/" else "must be a topic prefix without + # or a trailing /"
    yield "window.n", None if n & (n - 1) == 0 else "must be a power of two"
    yield "features.bands", _pairs(f["bands"], 8)
    yield "features.vel_band", _pairs([f["vel_band"]], 1)
    yield "features.iso_limits", None if len(lim) == 3 and all(isinstance(x, (int, float)) for x in lim) and lim[0] < lim[1] < lim[2] else "must be 3 increasing numbers (A/B, B/C, C/D)"
    yield "watchdog_s", None if cfg["watchdog_s"] == 0 or cfg["watchdog_s"] >= 1 else "must be 0 (off) or >= 1"


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
    for key, types, lo, hi in _rules():
        v = _get(cfg, key)
        if v is None and key == "node_id":
            errors.append("node_id: required")
            continue
        if not isinstance(v, types) or v is True or v is False:
            errors.append("%s: wrong type %s" % (key, type(v).__name__))
        elif lo is not None and not lo <= v <= hi:
            errors.append("%s: must be in %s..%s (got %r)" % (key, lo, hi, v))
    if not errors:
        for key, msg in _special(cfg):
            if msg:
                errors.append("%s: %s (got %r)" % (key, msg, _get(cfg, key)))
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
