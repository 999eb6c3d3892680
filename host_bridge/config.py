"""Bridge configuration: a TOML file validated completely at start.

Every error names the file, the key and the reason (ConfigError). Defaults are the embedded
defaults of the demo: everything on loopback.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_bridge.codec import valid_node_id


class ConfigError(ValueError):
    def __init__(self, source: str, key: str, reason: str):
        super().__init__(f"{source}: {key}: {reason}")
        self.source, self.key, self.reason = source, key, reason


@dataclass
class NodeConfig:
    id: str
    unit_id: int  # Modbus unit id of this node
    site: str = "site"
    area: str = "area"
    asset: str = ""
    description: str = ""
    iso_limits: tuple[float, float, float] = (2.8, 4.5, 7.1)  # mm/s zone A/B, B/C, C/D


@dataclass
class MqttConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "vibekit"
    client_id: str = "vibekit-bridge"
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    session_expiry_s: int = 86400  # broker keeps our subscriptions and queued batches this long
    protocol: int = 5  # MQTT 5, or 4 for 3.1.1 (persistent session via clean_session=false)
    embedded_broker: bool = False  # start mosquitto (or amqtt) ourselves
    # TLS to the broker (docs/security.md): CA that signed the broker's certificate (verified,
    # with its host name), and the bridge's own client certificate + key when the broker asks.
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


@dataclass
class SerialConfig:
    port: str
    baudrate: int = 115200
    node: str | None = None  # expected node id on this port (None: learn from HELLO)


@dataclass
class ModbusConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5020
    word_order: str = "ABCD"  # ABCD (big-endian) or CDAB
    layout: str = "unit"  # "unit": one unit id per node; "stride": one unit, nodes at offsets
    stride_unit_id: int = 1
    writable: bool = False
    max_connections: int = 32  # connection N+1 is closed at once (docs/security.md)


@dataclass
class OpcUaConfig:
    enabled: bool = True
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    namespace: str = "urn:vibekit:bridge"
    allow_anonymous: bool = False
    allow_none_security: bool = False
    users: dict[str, str] = field(default_factory=dict)  # username -> password
    cert_dir: str = "pki"
    trusted_client_certs: list[str] = field(default_factory=list)
    max_connections: int = 32  # connection N+1 is refused (docs/security.md)


@dataclass
class WebConfig:
    """The read-only status page, JSON API and Prometheus /metrics (host_bridge/web.py)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # anything but loopback requires username and password
    port: int = 8780
    username: str | None = None
    password: str | None = None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class BridgeConfig:
    data_dir: Path = Path("var")
    stale_after_s: float = 30.0
    offline_after_s: float = 120.0
    accept_unknown_nodes: bool = False
    rate_limit_batches_per_s: float = 50.0  # per node; over it batches are counted, not acked
    rate_limit_burst: float = 200.0
    nodes: list[NodeConfig] = field(default_factory=list)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    serial: list[SerialConfig] = field(default_factory=list)
    modbus: ModbusConfig = field(default_factory=ModbusConfig)
    opcua: OpcUaConfig = field(default_factory=OpcUaConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: str = "<defaults>"

    def node(self, node_id: str) -> NodeConfig | None:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None


_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _take(section: dict, key: str, typ: type, default: Any, src: str, path: str) -> Any:
    if key not in section:
        return default
    v = section[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ConfigError(src, f"{path}{key}", f"must be {_TYPES.get(typ, typ.__name__)}, got {v!r}")
    return v


def _check_keys(section: dict, allowed: set[str], src: str, path: str) -> None:
    for k in section:
        if k not in allowed:
            raise ConfigError(src, f"{path}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _table(data: dict, key: str, src: str) -> dict:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(src, key, f"must be a table ([{key}]), got {type(v).__name__}")
    return v


def _tables(data: dict, key: str, src: str) -> list[dict]:
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ConfigError(src, key, f"must be an array of tables ([[{key}]])")
    return v


def _port(v: int, src: str, key: str) -> int:
    if not 0 <= v <= 65535:
        raise ConfigError(src, key, f"port must be 0..65535, got {v}")
    return v


def parse_config(data: dict, source: str = "<config>") -> BridgeConfig:
    src = source
    top = {"bridge", "mqtt", "serial", "modbus", "opcua", "web", "nodes"}
    _check_keys(data, top, src, "")
    cfg = BridgeConfig(source=source)

    b = _table(data, "bridge", src)
    _check_keys(
        b,
        {"data_dir", "stale_after_s", "offline_after_s", "accept_unknown_nodes", "rate_limit_batches_per_s",
         "rate_limit_burst"},
        src,
        "bridge.",
    )
    cfg.data_dir = Path(_take(b, "data_dir", str, "var", src, "bridge."))
    cfg.stale_after_s = _take(b, "stale_after_s", float, 30.0, src, "bridge.")
    cfg.offline_after_s = _take(b, "offline_after_s", float, 120.0, src, "bridge.")
    cfg.accept_unknown_nodes = _take(b, "accept_unknown_nodes", bool, False, src, "bridge.")
    cfg.rate_limit_batches_per_s = _take(b, "rate_limit_batches_per_s", float, 50.0, src, "bridge.")
    cfg.rate_limit_burst = _take(b, "rate_limit_burst", float, 200.0, src, "bridge.")
    if cfg.rate_limit_batches_per_s <= 0 or cfg.rate_limit_burst < 1:
        raise ConfigError(src, "bridge.rate_limit_batches_per_s", "rate must be > 0 and burst >= 1")
    if cfg.stale_after_s <= 0 or cfg.offline_after_s <= cfg.stale_after_s:
        raise ConfigError(src, "bridge.offline_after_s", "must be > stale_after_s > 0")

    m = _table(data, "mqtt", src)
    keys = set(MqttConfig.__dataclass_fields__)
    _check_keys(m, keys, src, "mqtt.")
    d = MqttConfig()
    cfg.mqtt = MqttConfig(
        enabled=_take(m, "enabled", bool, d.enabled, src, "mqtt."),
        host=_take(m, "host", str, d.host, src, "mqtt."),
        port=_port(_take(m, "port", int, d.port, src, "mqtt."), src, "mqtt.port"),
        prefix=_take(m, "prefix", str, d.prefix, src, "mqtt.").strip("/"),
        client_id=_take(m, "client_id", str, d.client_id, src, "mqtt."),
        username=_take(m, "username", str, None, src, "mqtt."),
        password=_take(m, "password", str, None, src, "mqtt."),
        keepalive=_take(m, "keepalive", int, d.keepalive, src, "mqtt."),
        session_expiry_s=_take(m, "session_expiry_s", int, d.session_expiry_s, src, "mqtt."),
        protocol=_take(m, "protocol", int, d.protocol, src, "mqtt."),
        embedded_broker=_take(m, "embedded_broker", bool, d.embedded_broker, src, "mqtt."),
        tls_ca=_take(m, "tls_ca", str, None, src, "mqtt."),
        tls_cert=_take(m, "tls_cert", str, None, src, "mqtt."),
        tls_key=_take(m, "tls_key", str, None, src, "mqtt."),
    )
    if (cfg.mqtt.tls_cert is None) != (cfg.mqtt.tls_key is None):
        raise ConfigError(src, "mqtt.tls_key", "tls_cert and tls_key go together")
    if cfg.mqtt.tls_cert and not cfg.mqtt.tls_ca:
        raise ConfigError(src, "mqtt.tls_ca", "a client certificate needs tls_ca (the broker is always verified)")
    if cfg.mqtt.protocol not in (4, 5):
        raise ConfigError(src, "mqtt.protocol", f"must be 5 (MQTT 5) or 4 (MQTT 3.1.1), got {cfg.mqtt.protocol}")
    if not cfg.mqtt.prefix or any(c in cfg.mqtt.prefix for c in "+#"):
        raise ConfigError(src, "mqtt.prefix", "must be a non-empty topic without wildcards")

    ser = _tables(data, "serial", src)
    for i, s in enumerate(ser):
        p = f"serial[{i}]."
        _check_keys(s, {"port", "baudrate", "node"}, src, p)
        if "port" not in s:
            raise ConfigError(src, p + "port", "is required")
        cfg.serial.append(
            SerialConfig(
                port=_take(s, "port", str, "", src, p),
                baudrate=_take(s, "baudrate", int, 115200, src, p),
                node=_take(s, "node", str, None, src, p),
            )
        )

    mb = _table(data, "modbus", src)
    _check_keys(mb, set(ModbusConfig.__dataclass_fields__), src, "modbus.")
    dm = ModbusConfig()
    cfg.modbus = ModbusConfig(
        enabled=_take(mb, "enabled", bool, dm.enabled, src, "modbus."),
        host=_take(mb, "host", str, dm.host, src, "modbus."),
        port=_port(_take(mb, "port", int, dm.port, src, "modbus."), src, "modbus.port"),
        word_order=_take(mb, "word_order", str, dm.word_order, src, "modbus.").upper(),
        layout=_take(mb, "layout", str, dm.layout, src, "modbus."),
        stride_unit_id=_take(mb, "stride_unit_id", int, dm.stride_unit_id, src, "modbus."),
        writable=_take(mb, "writable", bool, dm.writable, src, "modbus."),
        max_connections=_take(mb, "max_connections", int, dm.max_connections, src, "modbus."),
    )
    if cfg.modbus.word_order not in ("ABCD", "CDAB"):
        raise ConfigError(src, "modbus.word_order", f"must be ABCD or CDAB, got {cfg.modbus.word_order!r}")
    if cfg.modbus.layout not in ("unit", "stride"):
        raise ConfigError(src, "modbus.layout", f"must be 'unit' or 'stride', got {cfg.modbus.layout!r}")

    ou = _table(data, "opcua", src)
    _check_keys(ou, set(OpcUaConfig.__dataclass_fields__), src, "opcua.")
    do = OpcUaConfig()
    users = ou.get("users", {})
    if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
        raise ConfigError(src, "opcua.users", "must be a table of username = \"password\"")
    trusted = ou.get("trusted_client_certs", [])
    if not isinstance(trusted, list) or not all(isinstance(v, str) for v in trusted):
        raise ConfigError(src, "opcua.trusted_client_certs", "must be a list of file paths")
    cfg.opcua = OpcUaConfig(
        enabled=_take(ou, "enabled", bool, do.enabled, src, "opcua."),
        endpoint=_take(ou, "endpoint", str, do.endpoint, src, "opcua."),
        namespace=_take(ou, "namespace", str, do.namespace, src, "opcua."),
        allow_anonymous=_take(ou, "allow_anonymous", bool, do.allow_anonymous, src, "opcua."),
        allow_none_security=_take(ou, "allow_none_security", bool, do.allow_none_security, src, "opcua."),
        users=dict(users),
        cert_dir=_take(ou, "cert_dir", str, do.cert_dir, src, "opcua."),
        trusted_client_certs=list(trusted),
        max_connections=_take(ou, "max_connections", int, do.max_connections, src, "opcua."),
    )
    for sect, v in (("modbus", cfg.modbus.max_connections), ("opcua", cfg.opcua.max_connections)):
        if not 1 <= v <= 10000:
            raise ConfigError(src, f"{sect}.max_connections", f"must be 1..10000, got {v}")
    if not cfg.opcua.endpoint.startswith("opc.tcp://"):
        raise ConfigError(src, "opcua.endpoint", "must start with opc.tcp://")

    w = _table(data, "web", src)
    _check_keys(w, set(WebConfig.__dataclass_fields__), src, "web.")
    dw = WebConfig()
    cfg.web = WebConfig(
        enabled=_take(w, "enabled", bool, dw.enabled, src, "web."),
        host=_take(w, "host", str, dw.host, src, "web."),
        port=_port(_take(w, "port", int, dw.port, src, "web."), src, "web.port"),
        username=_take(w, "username", str, None, src, "web."),
        password=_take(w, "password", str, None, src, "web."),
    )
    if (cfg.web.username is None) != (cfg.web.password is None) or cfg.web.password == "":
        raise ConfigError(src, "web.password", "username and a non-empty password go together")
    if cfg.web.enabled and not is_loopback(cfg.web.host) and not cfg.web.password:
        raise ConfigError(
            src, "web.host", f"{cfg.web.host!r} is not loopback: set web.username and web.password (HTTP basic auth)"
        )

    nodes = _tables(data, "nodes", src)
    seen_ids: set[str] = set()
    seen_units: set[int] = set()
    units_used = cfg.modbus.enabled and cfg.modbus.layout == "unit"
    for i, n in enumerate(nodes):
        p = f"nodes[{i}]."
        _check_keys(n, set(NodeConfig.__dataclass_fields__), src, p)
        if "id" not in n:
            raise ConfigError(src, p + "id", "is required")
        nid = _take(n, "id", str, "", src, p)
        if not valid_node_id(nid):
            raise ConfigError(src, p + "id", f"{nid!r} must be 1-32 characters of A-Z a-z 0-9 _ . -")
        if nid in seen_ids:
            raise ConfigError(src, p + "id", f"duplicate node id {nid!r}")
        unit = _take(n, "unit_id", int, i + 1, src, p)
        # Unit ids matter only where each node has its own (Modbus on, "unit" layout): a bridge
        # serving 1,000 nodes over OPC UA alone, or Modbus in the stride layout, needs none.
        if units_used and not 1 <= unit <= 247:
            raise ConfigError(src, p + "unit_id", f"must be 1..247, got {unit}")
        if units_used and unit in seen_units:
            raise ConfigError(src, p + "unit_id", f"duplicate unit id {unit}")
        lim = n.get("iso_limits", [2.8, 4.5, 7.1])
        if (
            not isinstance(lim, list)
            or len(lim) != 3
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lim)
            or not 0 < lim[0] < lim[1] < lim[2]
        ):
            raise ConfigError(src, p + "iso_limits", "must be three increasing numbers (mm/s A/B, B/C, C/D)")
        seen_ids.add(nid)
        seen_units.add(unit)
        cfg.nodes.append(
            NodeConfig(
                id=nid,
                unit_id=unit,
                site=_take(n, "site", str, "site", src, p),
                area=_take(n, "area", str, "area", src, p),
                asset=_take(n, "asset", str, nid, src, p),
                description=_take(n, "description", str, "", src, p),
                iso_limits=(float(lim[0]), float(lim[1]), float(lim[2])),
            )
        )
    stride_max = 65536 // 300  # register_map.STRIDE registers per node on one unit
    if cfg.modbus.enabled and cfg.modbus.layout == "stride" and len(cfg.nodes) > stride_max:
        raise ConfigError(src, "modbus.layout", f"the stride layout holds at most {stride_max} nodes, "
                          f"{len(cfg.nodes)} configured: use layout 'unit', or disable Modbus")
    return cfg


def load_config(path: str | Path) -> BridgeConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), "<file>", f"cannot read: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), "<syntax>", str(e)) from None
    cfg = parse_config(data, str(p))
    if not cfg.data_dir.is_absolute():
        cfg.data_dir = (p.parent / cfg.data_dir).resolve()
    return cfg
