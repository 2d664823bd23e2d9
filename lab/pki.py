"""The lab's certificate authorities, kept in memory.

Two CAs, as a real cluster has: an ECDSA one for the HTTPS APIs (Kubernetes, Proxmox)
and an Ed25519 one for Talos, whose apid and talosctl certificates are Ed25519 by
default (the reason the Talos client runs on grpclib and the stdlib ssl module). The
HTTPS CA is made fresh at every start; the Talos CA is the tree's OS CA when the lab can
open its secret bundle (`CertificateAuthority.from_pem`), else a fresh one too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    """PEM certificate and PKCS#8 PEM key (unencrypted; lives in memory and temp files only)."""

    cert_pem: bytes
    key_pem: bytes


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sign_algorithm(ca_key):
    return None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates of its own key type."""

    def __init__(self, common_name: str, *, ed25519_keys: bool) -> None:
        self.ed25519 = ed25519_keys
        self._key: Any = self._new_key()
        now = dt.datetime.now(dt.UTC)
        self._name = _name(common_name)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, _sign_algorithm(self._key))
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """An existing CA (a cluster's OS CA); its key type decides the issued keys'."""
        ca = cls.__new__(cls)
        ca._key = serialization.load_pem_private_key(key_pem, password=None)
        ca.ed25519 = isinstance(ca._key, ed25519.Ed25519PrivateKey)
        ca._cert = x509.load_pem_x509_certificate(cert_pem)
        ca._name = ca._cert.subject
        ca.cert_pem = ca._cert.public_bytes(serialization.Encoding.PEM)
        return ca

    def _new_key(self):
        if self.ed25519:
            return ed25519.Ed25519PrivateKey.generate()
        return ec.generate_private_key(ec.SECP256R1())

    def issue(
        self,
        common_name: str,
        *,
        hosts: Iterable[str] = (),
        orgs: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> KeyPair:
        key = self._new_key()
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, orgs))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, _sign_algorithm(self._key))
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


class Pki:
    """Everything the lab's servers and the clients it writes configs for need."""

    def __init__(self, talos_ca: CertificateAuthority | None = None) -> None:
        self.https_ca = CertificateAuthority("dapper-lab-ca", ed25519_keys=False)
        self.talos_ca = talos_ca or CertificateAuthority("talos", ed25519_keys=True)
        self.https_server = self.https_ca.issue(
            "dapper-lab", hosts=["127.0.0.1", "localhost", "::1"], server=True
        )

    def talos_server(self, hosts: Iterable[str]) -> KeyPair:
        return self.talos_ca.issue("apid", hosts=["127.0.0.1", "localhost", *hosts], server=True)

    def talos_client(self, role: str) -> KeyPair:
        """A talosctl-style client certificate; the role is the certificate's Organization."""
        return self.talos_ca.issue(role, orgs=[role], client=True)


def server_ssl_context(
    pair: KeyPair, *, client_ca_pem: bytes | None = None, alpn: Iterable[str] = ()
) -> ssl.SSLContext:
    """A server context; with `client_ca_pem` it requires a client certificate (mTLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_pair(ctx, pair)
    if client_ca_pem is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=client_ca_pem.decode())
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def load_pair(ctx: ssl.SSLContext, pair: KeyPair) -> None:
    """Load a cert/key pair into a context; `ssl` only takes files, so use a private temp dir."""
    with tempfile.TemporaryDirectory(prefix="dapper-pki-") as tmp:
        cert = Path(tmp) / "cert.pem"
        key = Path(tmp) / "key.pem"
        cert.write_bytes(pair.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pair.key_pem)
        ctx.load_cert_chain(str(cert), str(key))
