"""talosconfig files: load a context, and build the TLS contexts talosctl would use.

A talosconfig holds base64 PEM blobs; the key is labelled `ED25519 PRIVATE KEY`, which
OpenSSL refuses, so the label is rewritten to `PRIVATE KEY` (the PKCS#8 body is the
same). The stdlib ssl module only loads cert chains from files: the pair goes through an
in-memory file (memfd) so the private key never touches a disk.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import os
import re
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dapper.backends.errors import BackendError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

DEFAULT_PORT = 50000
_KEY_LABEL = re.compile(rb"-----(BEGIN|END) ED25519 PRIVATE KEY-----")


@dataclass(frozen=True)
class TalosContext:
    """One talosconfig context: where to dial, which nodes by default, and the mTLS pair."""

    name: str
    endpoints: tuple[str, ...]  # host:port, port defaulted to 50000
    nodes: tuple[str, ...] = ()
    ca_pem: bytes = field(default=b"", repr=False)
    crt_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)  # already relabelled to PRIVATE KEY
    cluster: str = ""


def default_talosconfig_path() -> Path:
    """$TALOSCONFIG, else $TALOS_HOME/config, else ~/.talos/config (as talosctl)."""
    if os.environ.get("TALOSCONFIG"):
        return Path(os.environ["TALOSCONFIG"]).expanduser()
    if os.environ.get("TALOS_HOME"):
        return Path(os.environ["TALOS_HOME"]).expanduser() / "config"
    return Path.home() / ".talos" / "config"


def fix_key_label(pem: bytes) -> bytes:
    """`ED25519 PRIVATE KEY` -> `PRIVATE KEY`; OpenSSL rejects the Talos label."""
    return _KEY_LABEL.sub(rb"-----\1 PRIVATE KEY-----", pem)


def split_endpoint(endpoint: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address -> (host, port)."""
    ep = endpoint.strip()
    if "://" in ep:
        ep = ep.split("://", 1)[1]
    if ep.startswith("["):
        host, _, rest = ep[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    with contextlib.suppress(ValueError):
        ipaddress.IPv6Address(ep)
        return ep, default_port
    host, sep, port = ep.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return ep, default_port


def join_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _b64(ctx: dict, key: str, name: str) -> bytes:
    raw = ctx.get(key) or ""
    if not raw:
        return b""
    try:
        return base64.b64decode(str(raw), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise BackendError(f"talosconfig context {name}: {key} is not base64") from exc


def load_talosconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None
) -> TalosContext:
    """Read one context of a talosconfig; errors are one-line BackendErrors."""
    cfg_path = Path(path).expanduser() if path else default_talosconfig_path()
    try:
        text = cfg_path.read_text()
    except OSError as exc:
        raise BackendError(f"talosconfig {cfg_path}: {exc.strerror or exc}") from exc
    return parse_talosconfig(text, context, where=str(cfg_path))


def parse_talosconfig(text: str, context: str | None = None, *, where: str = "") -> TalosContext:
    """One context of a talosconfig's text (a file, or one generated in memory)."""
    try:
        doc = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise BackendError(f"talosconfig {where}: not valid YAML") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), dict):
        raise BackendError(f"talosconfig {where}: no contexts")
    name = context or doc.get("context") or ""
    ctx = doc["contexts"].get(name)
    if not isinstance(ctx, dict):
        raise BackendError(f"talosconfig {where}: no context {name!r}")
    endpoints = [str(e) for e in ctx.get("endpoints") or []]
    if not endpoints:
        raise BackendError(f"talosconfig context {name}: no endpoints")
    return TalosContext(
        name=name,
        endpoints=tuple(join_endpoint(*split_endpoint(e)) for e in endpoints),
        nodes=tuple(str(n) for n in ctx.get("nodes") or []),
        ca_pem=_b64(ctx, "ca", name),
        crt_pem=_b64(ctx, "crt", name),
        key_pem=fix_key_label(_b64(ctx, "key", name)),
        cluster=str(ctx.get("cluster") or ""),
    )


def render_talosconfig(
    name: str,
    endpoints: list[str],
    nodes: list[str],
    ca_pem: bytes,
    crt_pem: bytes,
    key_pem: bytes,
) -> str:
    """A talosconfig as talosctl writes it (key labelled `ED25519 PRIVATE KEY`)."""
    talos_key = key_pem.replace(
        b"-----BEGIN PRIVATE KEY-----", b"-----BEGIN ED25519 PRIVATE KEY-----"
    )
    talos_key = talos_key.replace(
        b"-----END PRIVATE KEY-----", b"-----END ED25519 PRIVATE KEY-----"
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def seq(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"  # JSON is YAML

    return (
        f"context: {name}\n"
        "contexts:\n"
        f"  {name}:\n"
        f"    endpoints: {seq(endpoints)}\n"
        f"    nodes: {seq(nodes)}\n"
        f"    ca: {b64(ca_pem)}\n"
        f"    crt: {b64(crt_pem)}\n"
        f"    key: {b64(talos_key)}\n"
    )


@contextlib.contextmanager
def _secret_files(crt_pem: bytes, key_pem: bytes) -> Iterator[tuple[str, str]]:
    """Paths the ssl module can read the pair from: memfds, else a private temp dir."""
    if hasattr(os, "memfd_create"):
        fds = [os.memfd_create(n, 0) for n in ("talos-crt", "talos-key")]
        try:
            for fd, data in zip(fds, (crt_pem, key_pem), strict=True):
                os.write(fd, data)
            yield (f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="dapper-talos-") as tmp:
        crt, key = Path(tmp) / "crt.pem", Path(tmp) / "key.pem"
        crt.write_bytes(crt_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        yield (str(crt), str(key))


def load_client_pair(ctx: ssl.SSLContext, crt_pem: bytes, key_pem: bytes) -> None:
    with _secret_files(crt_pem, fix_key_label(key_pem)) as (crt, key):
        ctx.load_cert_chain(crt, key)


def client_ssl_context(tc: TalosContext) -> ssl.SSLContext:
    """mTLS as talosctl does it: verify the server against the talosconfig CA (hostname =
    the dialled endpoint host), present the client certificate, ALPN h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cadata=tc.ca_pem.decode())
        if tc.crt_pem or tc.key_pem:
            load_client_pair(ctx, tc.crt_pem, tc.key_pem)
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise BackendError(f"talosconfig context {tc.name}: bad ca/crt/key ({exc})") from exc
    ctx.set_alpn_protocols(["h2"])
    return ctx


def insecure_ssl_context() -> ssl.SSLContext:
    """Maintenance mode (talosctl --insecure): TLS without client cert or server checks."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


def certificate_roles(crt_pem: bytes) -> tuple[str, ...]:
    """The Talos roles (Subject Organization values) a client certificate carries."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(crt_pem)
    except ValueError:
        return ()
    return tuple(
        str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
