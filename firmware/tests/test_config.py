# heap: 128K
# Node config validation on the VM: defaults, clear errors naming the key.
import json

import mptest
from vibenode.config import ConfigError, load, validate


def _err(given):
    return str(mptest.raises(ConfigError, validate, given))


def test_defaults_filled():
    cfg = validate({"node_id": "pump-01"})
    assert cfg["uplink"] == "mqtt" and cfg["mqtt"]["port"] == 1883
    assert cfg["mqtt"]["client_id"] == "pump-01"
    assert cfg["window"]["n"] == 1024 and cfg["batch"]["max_records"] == 64


def test_partial_sections_merge():
    cfg = validate({"node_id": "n", "mqtt": {"port": 1884}, "window": {"interval_s": 2}})
    assert cfg["mqtt"]["port"] == 1884 and cfg["mqtt"]["prefix"] == "vibekit"
    assert cfg["window"]["interval_s"] == 2 and cfg["window"]["odr_hz"] == 3200


def test_errors_name_the_key():
    assert "node_id: required" in _err({})
    assert "node_id" in _err({"node_id": "a/b"})
    assert "mqtt.port" in _err({"node_id": "n", "mqtt": {"port": 0}})
    assert "mqtt.prot: unknown key" in _err({"node_id": "n", "mqtt": {"prot": 1}})
    assert "uplink" in _err({"node_id": "n", "uplink": "lora"})
    assert "window.n" in _err({"node_id": "n", "window": {"n": 1000}})
    assert "features.bands" in _err({"node_id": "n", "features": {"bands": [[100, 10]]}})
    assert "mqtt.prefix" in _err({"node_id": "n", "mqtt": {"prefix": "a/#"}})
    assert "mqtt.keepalive_s: wrong type" in _err({"node_id": "n", "mqtt": {"keepalive_s": True}})
    e = _err({"node_id": "n", "mqtt": {"port": "x"}, "batch": {"max_records": 0}})
    assert "mqtt.port" in e and "batch.max_records" in e  # every problem at once


def test_load_file_errors():
    assert "cannot read" in str(mptest.raises(ConfigError, load, "nope.json"))
    with open("bad.json", "w") as f:
        f.write("{node_id: 1")
    assert "not valid JSON" in str(mptest.raises(ConfigError, load, "bad.json"))
    with open("ok.json", "w") as f:
        json.dump({"node_id": "x1", "uplink": "serial"}, f)
    assert load("ok.json")["uplink"] == "serial"


mptest.main(globals())
