"""A throwaway PKI for TLS tests: a CA, a server certificate and client certificates.

Generated with the `cryptography` package (RSA 2048 and SHA-256, which every mbedTLS build
of MicroPython verifies), written as PEM files into a test's temp dir. `TestCA("rogue")` gives
a second, untrusted CA for the wrong-certificate cases.

    ca = TestCA(tmp / "pki")
    srv = ca.issue("broker", dns=["broker.vibekit.test"], ips=["127.0.0.1"], server=True)
    cli = ca.issue("n1")            # CN = n1, clientAuth
    srv.cert, srv.key, ca.cert      # PEM paths; cli.cert_der, cli.key_der, ca.cert_der: DER
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vibekit test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


@dataclass
class Issued:
    name: str
    cert: Path  # PEM (mosquitto, paho)
    key: Path
    cert_der: Path  # DER: MicroPython's mbedTLS build on the VM parses DER only
    key_der: Path


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, name: str = "vibekit-test-ca", days: int = 2) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.days = days
        self._key = _key()
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = self.dir / f"{name}.crt"
        self.cert.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.cert_der = self.dir / f"{name}.der"
        self.cert_der.write_bytes(self._cert.public_bytes(serialization.Encoding.DER))

    def issue(self, cn: str, dns: list[str] = (), ips: list[str] = (), server: bool = False) -> Issued:
        """A leaf certificate signed by this CA: server (serverAuth + SANs) or client (clientAuth)."""
        key = _key()
        now = dt.datetime.now(dt.UTC)
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self._key, hashes.SHA256())
        stem = f"{self.name}-{cn}"
        cp, kp = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp.write_bytes(_pem_key(key))
        kp.chmod(0o600)
        cd, kd = self.dir / f"{stem}.crt.der", self.dir / f"{stem}.key.der"
        cd.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        kd.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()))
        kd.chmod(0o600)
        return Issued(cn, cp, kp, cd, kd)
