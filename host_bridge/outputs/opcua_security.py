"""OPC UA security for the bridge: server certificate, client trust list, users, read-only rights.

* The server certificate and key are generated on first start into <data_dir>/<cert_dir>/own/
  (key file mode 0600) and regenerated when missing, expired or issued for another URI.
* Client application certificates are trusted when their SHA-256 thumbprint matches a
  certificate in `opcua.trusted_client_certs` (files or directories, DER or PEM) or in
  <cert_dir>/trusted/. A rejected certificate is saved to <cert_dir>/rejected/ so an
  administrator can review it and move it to trusted/.
* Users: `opcua.users` maps user names to passwords, either plain text or
  `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` (see hash_password). Anonymous only when
  `allow_anonymous`. The client application itself is authenticated by the trust list.
* Every session is read-only: writes, method calls and address-space changes are refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import socket
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
]

_READ_ONLY_TYPES = [
    t
    for t in USER_TYPES
    if t
    not in (
        ua.ObjectIds.WriteRequest_Encoding_DefaultBinary,
        ua.ObjectIds.CallRequest_Encoding_DefaultBinary,
    )
]


def hash_password(password: str, iterations: int = 200_000) -> str:
    """A `pbkdf2_sha256$...` string for opcua.users (keeps plain passwords out of the config)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_password(stored: str, given: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, it, salt, digest = stored.split("$")
            calc = hashlib.pbkdf2_hmac("sha256", given.encode(), bytes.fromhex(salt), int(it))
        except ValueError:
            return False
        return hmac.compare_digest(calc.hex(), digest)
    return hmac.compare_digest(stored.encode(), given.encode())


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _load_cert_file(path: Path) -> x509.Certificate | None:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        log.warning("OPC UA trust list: %s is not a certificate, ignored", path)
        return None


def ensure_server_certificate(pki: Path, app_uri: str, hostname: str | None = None) -> tuple[Path, Path]:
    """Create (once) the server's key and self-signed application certificate; returns paths."""
    own = pki / "own"
    own.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = own / "server_key.pem", own / "server_cert.der"
    host = hostname or socket.gethostname()
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        key = cert_gen.generate_private_key()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cert_gen.dump_private_key_as_pem(key))
        if cert_path.exists():
            cert_path.unlink()
    regenerate = not cert_path.exists()
    if not regenerate:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        try:
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uri_ok = app_uri in uris.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uri_ok = False
        regenerate = not uri_ok or cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
    if regenerate:
        cert = cert_gen.generate_self_signed_app_certificate(
            key,
            "vibekit bridge",
            {"organizationName": "vibekit"},
            [x509.UniformResourceIdentifier(app_uri), x509.DNSName(host), x509.DNSName("localhost")],
            extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            days=3650,
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        log.info("OPC UA: generated server certificate %s", cert_path)
    return cert_path, key_path


class TrustList:
    """Client application certificates trusted by thumbprint."""

    def __init__(self, locations: list[Path], rejected_dir: Path | None = None) -> None:
        self.locations = locations
        self.rejected_dir = rejected_dir
        self.rejected = 0
        self._trusted: dict[str, x509.Certificate] = {}
        self.reload()

    def reload(self) -> None:
        self._trusted = {}
        for loc in self.locations:
            files = sorted(p for p in loc.iterdir() if p.is_file()) if loc.is_dir() else [loc] if loc.exists() else []
            if not files and not loc.exists():
                log.warning("OPC UA trust list: %s does not exist", loc)
            for f in files:
                cert = _load_cert_file(f)
                if cert is not None:
                    self._trusted[thumbprint(cert)] = cert

    def __len__(self) -> int:
        return len(self._trusted)

    def is_trusted(self, cert: x509.Certificate) -> bool:
        if thumbprint(cert) not in self._trusted:
            return False
        now = dt.datetime.now(dt.UTC)
        return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc

    async def validate(self, cert: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        """asyncua certificate validator: raises for an untrusted client certificate."""
        if self.is_trusted(cert):
            return
        self.rejected += 1
        tp = thumbprint(cert)
        log.warning("OPC UA: rejected untrusted client certificate %s (%s)", tp[:16], cert.subject.rfc4514_string())
        if self.rejected_dir is not None:
            try:
                self.rejected_dir.mkdir(parents=True, exist_ok=True)
                (self.rejected_dir / f"{tp}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
            except OSError:
                pass
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


class BridgeUserManager:
    """Users from the configuration; anonymous only when allowed."""

    def __init__(self, users: dict[str, str], allow_anonymous: bool, trust: TrustList) -> None:
        self.users = dict(users)
        self.allow_anonymous = allow_anonymous
        self.trust = trust
        self.denied = 0

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        # `certificate` is the secure channel's client certificate (already checked by the trust
        # list at CreateSession) for every token type, so it cannot tell an X509 identity token
        # from an anonymous one: the bridge offers only user-name and (if allowed) anonymous tokens.
        if username is not None:
            stored = self.users.get(username)
            # compare even for unknown users so timing does not reveal who exists
            ok = check_password(stored if stored is not None else "\0", password or "")
            if stored is not None and ok:
                return User(role=UserRole.User, name=username)
            self.denied += 1
            log.warning("OPC UA: login refused for user %r", username)
            return None
        if self.allow_anonymous:
            return User(role=UserRole.User, name="anonymous")
        self.denied += 1
        return None


class ReadOnlyRuleset(PermissionRuleset):
    """Read, browse, subscribe and read history; nothing that changes the server."""

    def __init__(self) -> None:
        self._allowed = set(map(ua.NodeId, _READ_ONLY_TYPES))

    def check_validity(self, user, action_type_id, body) -> bool:
        return action_type_id in self._allowed
