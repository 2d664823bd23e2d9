"""A new Talos secret bundle, as `talosctl gen secrets` / `talhelper gensecret` make it.

Cluster id and secret, the bootstrap and trustd tokens, the secretbox key, CAs for etcd,
Kubernetes and the aggregator (ECDSA P-256, ten years), the service-account key, and the
Talos API CA (Ed25519). The result is plain data for `encrypt_documents`: it lives in
memory only and is written to disk encrypted, never in plaintext.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import string
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

CA_YEARS = 10
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def _token() -> str:
    """`[a-z0-9]{6}.[a-z0-9]{16}`: the shape of Kubernetes bootstrap and trustd tokens."""
    pick = secrets.choice
    return (
        "".join(pick(_TOKEN_ALPHABET) for _ in range(6))
        + "."
        + "".join(pick(_TOKEN_ALPHABET) for _ in range(16))
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def signing_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Digital signature, plus certificate signing for a CA (as Talos's x509 package sets)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca(organization: str, key: Any, now: dt.datetime) -> bytes:
    """A self-signed CA certificate (PEM) for `key`."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    name = x509.Name(attrs)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=10))
        .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(signing_usage(cert_sign=True), critical=True)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def _ec_pair(organization: str, now: dt.datetime) -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return {"crt": _b64(_ca(organization, key, now)), "key": _b64(_ec_pem(key))}


def _ec_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "EC PRIVATE KEY", as Talos writes
        serialization.NoEncryption(),
    )


def new_secret_bundle(now: dt.datetime | None = None) -> dict[str, Any]:
    """A complete bundle in talsecret.yaml's layout (what `parse_bundle` reads)."""
    now = now or dt.datetime.now(dt.UTC)
    os_key = ed25519.Ed25519PrivateKey.generate()
    os_key_pem = os_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "cluster": {
            "id": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "secret": _b64(secrets.token_bytes(32)),
        },
        "secrets": {
            "bootstraptoken": _token(),
            "secretboxencryptionsecret": _b64(secrets.token_bytes(32)),
        },
        "trustdinfo": {"token": _token()},
        "certs": {
            "etcd": _ec_pair("etcd", now),
            "k8s": _ec_pair("kubernetes", now),
            "k8saggregator": _ec_pair("", now),
            "k8sserviceaccount": {"key": _b64(_ec_pem(ec.generate_private_key(ec.SECP256R1())))},
            "os": {"crt": _b64(_ca("talos", os_key, now)), "key": _b64(os_key_pem)},
        },
    }
