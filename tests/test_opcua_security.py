"""OPC UA security: encrypted endpoints only, trust list, users, read-only sessions."""

from __future__ import annotations

import asyncio
import os
import stat
import threading

import pytest
from asyncua import Client, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.security_policies import SecurityPolicyAes256Sha256RsaPss, SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from host_bridge.config import BridgeConfig, NodeConfig, OpcUaConfig
from host_bridge.outputs.opcua import OpcUaOutput
from host_bridge.outputs.opcua_security import check_password, ensure_server_certificate, hash_password
from host_bridge.tags import TagStore

CLIENT_URI = "urn:vibekit:test:client"


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def make_client_cert(directory, name):
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(CLIENT_URI), x509.DNSName("localhost")],
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH], days=30,
    )
    cp, kp = directory / f"{name}.der", directory / f"{name}_key.pem"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    kp.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cp, kp


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = tmp_path_factory.mktemp("uasec")
    good = make_client_cert(d, "trusted_client")
    bad = make_client_cert(d, "stranger")
    cfg = BridgeConfig(
        data_dir=d,
        nodes=[NodeConfig("n1", 1)],
        opcua=OpcUaConfig(
            endpoint="opc.tcp://127.0.0.1:0",
            users={"operator": "op-pass", "historian": hash_password("s3cret", iterations=1000)},
            trusted_client_certs=[str(good[0])],
        ),
    )
    lt = LoopThread()
    out = OpcUaOutput(cfg, TagStore(["n1"]))
    lt.run(out.start())
    yield lt, out, cfg, good, bad
    lt.run(out.stop())
    lt.close()


async def _session(out, cfg, cert, policy=SecurityPolicyBasic256Sha256, user=None, password=None, action=None):
    c = Client(out.endpoint, timeout=5)
    c.application_uri = CLIENT_URI
    if cert is not None:
        server_cert = str(cfg.data_dir / "pki" / "own" / "server_cert.der")
        await c.set_security(policy, str(cert[0]), str(cert[1]), server_certificate=server_cert)
    if user:
        c.set_user(user)
        c.set_password(password)
    await c.connect()
    try:
        idx = await c.get_namespace_index(cfg.opcua.namespace)
        node = c.get_node(ua.NodeId("n1.temperature", idx))
        dv = await node.read_data_value(raise_on_bad_status=False)
        if action == "write":
            await node.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Float)))
        return dv
    finally:
        await c.disconnect()


def test_endpoints_are_encrypted_only(secure):
    lt, out, *_ = secure

    async def endpoints():
        c = Client(out.endpoint)
        return await c.connect_and_get_server_endpoints()

    eps = lt.run(endpoints())
    uris = {e.SecurityPolicyUri.rsplit("#", 1)[1] for e in eps}
    assert uris == {"Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep"}
    assert all(e.SecurityMode == ua.MessageSecurityMode.SignAndEncrypt for e in eps)
    tokens = {t.TokenType for e in eps for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.UserName}  # no anonymous


@pytest.mark.parametrize("policy", [SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss])
def test_trusted_client_with_password_reads(secure, policy):
    lt, out, cfg, good, _ = secure
    dv = lt.run(_session(out, cfg, good, policy, "operator", "op-pass"))
    assert dv.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
    dv = lt.run(_session(out, cfg, good, policy, "historian", "s3cret"))  # hashed password in config
    assert dv.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData


def test_untrusted_certificate_rejected(secure):
    lt, out, cfg, _, bad = secure
    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        lt.run(_session(out, cfg, bad, SecurityPolicyBasic256Sha256, "operator", "op-pass"))
    rejected = list((cfg.data_dir / "pki" / "rejected").iterdir())
    assert len(rejected) == 1 and rejected[0].read_bytes() == bad[0].read_bytes()
    assert out.trust.rejected >= 1


def test_wrong_password_and_unknown_user_rejected(secure):
    lt, out, cfg, good, _ = secure
    with pytest.raises(ua.UaStatusCodeError):
        lt.run(_session(out, cfg, good, SecurityPolicyBasic256Sha256, "operator", "wrong"))
    with pytest.raises(ua.UaStatusCodeError):
        lt.run(_session(out, cfg, good, SecurityPolicyBasic256Sha256, "nobody", "op-pass"))
    assert out.users.denied >= 2


def test_anonymous_refused(secure):
    lt, out, cfg, good, _ = secure
    with pytest.raises(ua.UaStatusCodeError):
        lt.run(_session(out, cfg, good, SecurityPolicyBasic256Sha256))


def test_none_security_refused(secure):
    lt, out, cfg, *_ = secure
    with pytest.raises(ua.UaError):  # no endpoint / secure channel for SecurityPolicy#None
        lt.run(_session(out, cfg, None, user="operator", password="op-pass"))


def test_sessions_are_read_only(secure):
    lt, out, cfg, good, _ = secure
    with pytest.raises(ua.UaStatusCodeError):
        lt.run(_session(out, cfg, good, SecurityPolicyBasic256Sha256, "operator", "op-pass", action="write"))


def test_server_certificate_generated_once(tmp_path):
    cert, key = ensure_server_certificate(tmp_path / "pki", "urn:x:server", "host1")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    c = x509.load_der_x509_certificate(cert.read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:x:server" in san.get_values_for_type(x509.UniformResourceIdentifier)
    before = cert.read_bytes()
    ensure_server_certificate(tmp_path / "pki", "urn:x:server", "host1")
    assert cert.read_bytes() == before  # reused, not regenerated
    ensure_server_certificate(tmp_path / "pki", "urn:y:server", "host1")
    assert cert.read_bytes() != before  # new application URI: new certificate, same key


def test_password_hashing():
    h = hash_password("abc", iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$")
    assert check_password(h, "abc") and not check_password(h, "abd")
    assert check_password("plain", "plain") and not check_password("plain", "plainx")
    assert not check_password("pbkdf2_sha256$broken", "x")
