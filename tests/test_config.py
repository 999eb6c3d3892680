"""Config errors name the file, the key and the reason."""

from __future__ import annotations

import pytest

from host_bridge.config import ConfigError, load_config

GOOD = """
[bridge]
data_dir = "data"
[mqtt]
port = 1884
prefix = "plant1/hall2"
[modbus]
word_order = "cdab"
[[nodes]]
id = "pump-01"
unit_id = 3
iso_limits = [1.4, 2.8, 4.5]
[[serial]]
port = "/dev/serial/by-id/usb-node"
node = "pump-01"
"""


def test_good_config_loads_with_paths_relative_to_the_file(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text(GOOD)
    cfg = load_config(p)
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.mqtt.port == 1884 and cfg.mqtt.prefix == "plant1/hall2"
    assert cfg.modbus.word_order == "CDAB"
    assert cfg.node("pump-01").unit_id == 3 and cfg.node("pump-01").iso_limits == (1.4, 2.8, 4.5)
    assert cfg.serial[0].node == "pump-01"


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ("[mqtt]\nport = 70000\n", "mqtt.port", "0..65535"),
        ("[mqtt]\nprot = 1\n", "mqtt.prot", "unknown key"),
        ("[modbus]\nword_order = 'BADC'\n", "modbus.word_order", "ABCD or CDAB"),
        ("[[nodes]]\nid = 'a b'\n", "nodes[0].id", "must be 1-32"),
        ("[[nodes]]\nid = 'a'\n[[nodes]]\nid = 'a'\nunit_id = 2\n", "nodes[1].id", "duplicate"),
        ("[[nodes]]\nid = 'a'\nunit_id = 300\n", "nodes[0].unit_id", "1..247"),
        ("[[nodes]]\nid = 'a'\niso_limits = [3, 2, 1]\n", "nodes[0].iso_limits", "increasing"),
        ("[[serial]]\nbaudrate = 9600\n", "serial[0].port", "required"),
        ("bridge = 3\n", "bridge", "must be a table"),
        ("[bridge]\nstale_after_s = 'soon'\n", "bridge.stale_after_s", "must be a number"),
        ("[opcua]\nendpoint = 'http://x'\n", "opcua.endpoint", "opc.tcp://"),
        ("[mqtt\n", "<syntax>", ""),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path, text, key, reason):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.source == str(p)
    assert e.value.key == key
    assert reason in e.value.reason
    assert str(e.value).startswith(f"{p}: {key}: ")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_rate_limit_settings_reach_the_ingest(tmp_path):
    from host_bridge.config import parse_config
    from host_bridge.service import Bridge

    cfg = parse_config(
        {"bridge": {"data_dir": str(tmp_path), "rate_limit_batches_per_s": 5, "rate_limit_burst": 7},
         "mqtt": {"enabled": False}, "modbus": {"enabled": False}, "opcua": {"enabled": False},
         "web": {"enabled": False}},
        "t",
    )
    b = Bridge(cfg)
    assert (b.ingest.limiter.rate, b.ingest.limiter.burst) == (5.0, 7.0)
    b.historian.close()
    with pytest.raises(ConfigError, match="rate must be"):
        parse_config({"bridge": {"rate_limit_batches_per_s": 0}}, "t")


def _nodes_toml(n: int) -> str:
    return "".join(f"[[nodes]]\nid = 'n{i:04d}'\n" for i in range(n))


def test_unit_ids_are_checked_only_where_modbus_gives_each_node_one(tmp_path):
    p = tmp_path / "b.toml"
    # 1,000 nodes served over OPC UA alone: no unit ids needed, none checked
    p.write_text("[modbus]\nenabled = false\n" + _nodes_toml(1000))
    assert len(load_config(p).nodes) == 1000
    # the same with Modbus on in the unit layout: node 248 has no unit id left
    p.write_text(_nodes_toml(248))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key == "nodes[247].unit_id" and "1..247" in str(e.value)
    # the stride layout holds 218 nodes on one unit, and says so when given more
    p.write_text("[modbus]\nlayout = 'stride'\n" + _nodes_toml(218))
    assert len(load_config(p).nodes) == 218
    p.write_text("[modbus]\nlayout = 'stride'\n" + _nodes_toml(219))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.key == "modbus.layout" and "at most 218" in str(e.value)
