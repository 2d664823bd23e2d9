"""One kubeconfig context, read without the `kubernetes` package, for the lean read path.

The official client costs about 1.7 s of imports before its first request; the snapshot
only needs the server, its CA and the user's certificate or token. This reads exactly
those. A context whose user authenticates another way (exec plugins, auth providers,
basic auth), a proxy, or a KUBECONFIG that merges several files yields None: then the
caller uses the full client, which knows them all.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.backends.errors import BackendError

# user keys this reader understands; any other auth key means "use the full client"
_SIMPLE_USER_KEYS = frozenset(
    {"client-certificate", "client-certificate-data", "client-key", "client-key-data"}
    | {"token", "tokenFile"}
)
_UNSUPPORTED_CLUSTER_KEYS = frozenset({"proxy-url", "disable-compression"})


@dataclass(frozen=True)
class KubeTarget:
    """Where and as whom to talk to one cluster. The key stays in memory (repr hides it)."""

    server: str
    context: str
    ca_pem: bytes = b""
    cert_pem: bytes = b""
    key_pem: bytes = b""
    token: str = ""
    insecure: bool = False
    tls_server_name: str = ""

    def __repr__(self) -> str:
        return f"KubeTarget(server={self.server!r}, context={self.context!r})"


def scratch_dir() -> str:
    """A fresh 0700 directory to unpack kubeconfig certificate and key data into (the ssl
    module loads a client key only from a file), on a memory filesystem when there is one.
    Callers remove it as soon as the key is loaded, so no exit, SIGKILL included, leaves
    a key on disk."""
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        return tempfile.mkdtemp(prefix="dapper-kube-", dir=base)
    except OSError:
        return tempfile.mkdtemp(prefix="dapper-kube-")


def kubeconfig_path(
    explicit: str | os.PathLike[str] | None, *, first_of_many: bool = False
) -> Path | None:
    """The file the client would read: the explicit one, else a single KUBECONFIG
    entry, else ~/.kube/config. When KUBECONFIG merges several files: None, or the first
    with `first_of_many`."""
    if explicit:
        return Path(explicit).expanduser()
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if len(listed) > 1 and not first_of_many:
        return None
    return Path(listed[0]).expanduser() if listed else Path.home() / ".kube" / "config"


def named(items: Any, name: str) -> dict[str, Any]:
    """The entry called `name` of a kubeconfig list (clusters, users, contexts), or {}."""
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return {}


def _material(section: dict[str, Any], key: str, base: Path) -> bytes:
    """`key-data` (base64) or the file `key` names (relative to the kubeconfig)."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=False)
        except (binascii.Error, ValueError) as exc:
            raise BackendError(f"kubeconfig: {key}-data is not base64", code="CONFIG") from exc
    name = section.get(key)
    if not name:
        return b""
    path = Path(str(name)).expanduser()
    try:
        return (path if path.is_absolute() else base / path).read_bytes()
    except OSError as exc:
        raise BackendError(f"kubeconfig: {key} {name}: {exc.strerror}", code="CONFIG") from exc


def read_target(
    path: str | os.PathLike[str] | None, context: str | None = None
) -> KubeTarget | None:
    """The context's KubeTarget, or None when only the full client can serve it.
    A missing file or broken YAML is the full client's to report, so also None."""
    file = kubeconfig_path(path)
    if file is None or not file.is_file():
        return None
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(file.read_text())
    except (OSError, UnicodeDecodeError, YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    name = context or str(doc.get("current-context") or "")
    ctx = named(doc.get("contexts"), name).get("context")
    if not isinstance(ctx, dict):
        return None
    cluster = named(doc.get("clusters"), str(ctx.get("cluster") or "")).get("cluster")
    user = named(doc.get("users"), str(ctx.get("user") or "")).get("user") or {}
    if not isinstance(cluster, dict) or not isinstance(user, dict) or not cluster.get("server"):
        return None
    if set(user) - _SIMPLE_USER_KEYS or set(cluster) & _UNSUPPORTED_CLUSTER_KEYS:
        return None
    server = str(cluster["server"]).rstrip("/")
    if not server.startswith("https://"):
        return None  # plain HTTP or something odd: the full client decides
    base = file.parent
    token = str(user.get("token") or "")
    if not token and user.get("tokenFile"):
        token = _material({"token": user["tokenFile"]}, "token", base).decode().strip()
    return KubeTarget(
        server=server,
        context=name,
        ca_pem=_material(cluster, "certificate-authority", base),
        cert_pem=_material(user, "client-certificate", base),
        key_pem=_material(user, "client-key", base),
        token=token,
        insecure=cluster.get("insecure-skip-tls-verify") is True,
        tls_server_name=str(cluster.get("tls-server-name") or ""),
    )
