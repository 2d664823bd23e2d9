"""The talosconfig `talhelper genconfig` writes: an admin client certificate from the OS CA.

As Talos's secrets.NewAdminCertificateAndKey: a fresh Ed25519 key, O=os:admin, client-auth
only, digital-signature key usage, signed by the bundle's OS CA (certs.os), valid from
now for `ttl` (talhelper's --crt-ttl default is a year). Context = the cluster name,
endpoints = the control planes' IPs, nodes = every node's IP. The key never leaves memory
except in the returned bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from dapper.backends.clients.talosconfig import fix_key_label, render_talosconfig
from dapper.backends.talosgen.gensecret import signing_usage
from dapper.backends.talosgen.secrets import CertPair
from dapper.backends.talosgen.talconfig import TalConfigError

ADMIN_ROLE = "os:admin"
DEFAULT_TTL = dt.timedelta(days=365)


def _pem(b64: str, what: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except ValueError:
        raise TalConfigError(f"the secret bundle's {what} is not base64") from None


def issue_admin_certificate(
    os_ca: CertPair, *, ttl: dt.timedelta = DEFAULT_TTL, now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM) for role os:admin, signed by the OS CA."""
    try:
        ca_cert = x509.load_pem_x509_certificate(_pem(os_ca.crt, "certs.os.crt"))
        ca_key = serialization.load_pem_private_key(
            fix_key_label(_pem(os_ca.key, "certs.os.key")), password=None
        )
    except ValueError:
        raise TalConfigError("the secret bundle's certs.os is not a certificate and key") from None
    now = now or dt.datetime.now(dt.UTC)
    key = ed25519.Ed25519PrivateKey.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ADMIN_ROLE)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(signing_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    try:
        cert = builder.sign(ca_key, algorithm)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TalConfigError("the secret bundle's certs.os key cannot sign certificates") from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def build_talosconfig(
    context: str, endpoints: Sequence[str], nodes: Sequence[str], os_ca: CertPair
) -> bytes:
    """A talosconfig (talosctl's format) with a fresh os:admin certificate."""
    crt_pem, key_pem = issue_admin_certificate(os_ca)
    text = render_talosconfig(
        context, list(endpoints), list(nodes), _pem(os_ca.crt, "certs.os.crt"), crt_pem, key_pem
    )
    return text.encode("utf-8")
