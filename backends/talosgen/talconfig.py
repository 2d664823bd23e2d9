"""talconfig.yaml (talhelper's format) and talenv.yaml, read as talhelper reads them.

`${VAR}` (and `${VAR:-default}`) in talconfig.yaml and in patch files are replaced from
talenv.yaml, then from the environment, before the YAML is parsed, as talhelper's envsubst
does; an unset variable without a default is refused here (talhelper would silently
substitute nothing). `@./path` patch references are relative to talconfig.yaml.

Only the talhelper keys this tree uses (and a few close ones) are understood; any other key
is refused with its file:line, so a config is never generated with a setting quietly left
out. Role patches (`controlPlane.patches`, `worker.patches`) come before a node's own
patches unless the node says `overridePatches: true`, as talhelper merges node groups.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapper.backends.errors import BackendError
from dapper.backends.talosgen.yamlio import YamlLoadError, line_of, load_documents, to_plain

TALOS_DIR = Path("kubernetes/bootstrap/talos")
TALCONFIG = "talconfig.yaml"
TALENV = "talenv.yaml"
# The Talos minor version whose generator defaults `machineconfig` reproduces; another
# minor changes them (v1.12 moves the hostname and resolvers into their own documents).
MODELLED_TALOS = "v1.11."

_TOP_KEYS = {
    "clusterName",
    "talosVersion",
    "kubernetesVersion",
    "endpoint",
    "domain",
    "allowSchedulingOnControlPlanes",
    "additionalMachineCertSans",
    "additionalApiServerCertSans",
    "clusterPodNets",
    "clusterSvcNets",
    "cniConfig",
    "patches",
    "nodes",
    "controlPlane",
    "worker",
}
_NODE_KEYS = {
    "hostname",
    "ipAddress",
    "controlPlane",
    "installDisk",
    "talosImageURL",
    "machineSpec",
    "networkInterfaces",
    "patches",
    "overridePatches",
    "certSANs",
}
_GROUP_KEYS = {"patches"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


class TalConfigError(BackendError):
    """talconfig.yaml, talenv.yaml, a patch or the secret bundle cannot be used as is."""


@dataclass(frozen=True)
class TalNode:
    """One `nodes[]` entry: what the runbooks need, plus its interfaces for the generator."""

    hostname: str
    ip: str
    control_plane: bool
    install_disk: str
    image: str  # the installer image with its tag (talosImageURL:talosVersion)
    macs: tuple[str, ...]  # lower-case, from networkInterfaces[].deviceSelector.hardwareAddr
    patches: tuple[str, ...]  # the entry's own `patches`, as written ("@./…" or inline)
    line: int  # line of the entry in talconfig.yaml
    # controlPlane.patches or worker.patches (none when the node says overridePatches)
    role_patches: tuple[str, ...] = ()
    interfaces: tuple[Mapping[str, Any], ...] = field(default=(), repr=False, compare=False)
    cert_sans: tuple[str, ...] = ()

    @property
    def role(self) -> str:
        return "controlplane" if self.control_plane else "worker"


@dataclass(frozen=True)
class TalConfig:
    """talconfig.yaml with talenv.yaml's variables substituted."""

    cluster_name: str
    endpoint: str
    talos_version: str  # "v1.11.2"
    kubernetes_version: str  # "v1.33.4"
    nodes: tuple[TalNode, ...]
    path: Path  # the talconfig.yaml
    pod_subnets: tuple[str, ...] = ()
    service_subnets: tuple[str, ...] = ()
    cni: Mapping[str, Any] | None = field(default=None, compare=False)
    dns_domain: str = "cluster.local"
    allow_scheduling_on_control_planes: bool = False
    api_server_cert_sans: tuple[str, ...] = ()
    machine_cert_sans: tuple[str, ...] = ()
    patches: tuple[str, ...] = ()  # the global ones
    talos_version_line: int = 0

    def check_modelled_version(self) -> None:
        """Refuse a Talos minor version whose generator defaults are not the modelled ones
        (loading still works: the runbooks read nodes whatever the version)."""
        if not self.talos_version.startswith(MODELLED_TALOS):
            raise TalConfigError(
                f"{self.path}:{self.talos_version_line}: talosVersion {self.talos_version}: "
                f"the generator models Talos {MODELLED_TALOS}x only (use talhelper)"
            )

    def node(self, hostname: str) -> TalNode | None:
        return next((n for n in self.nodes if n.hostname == hostname), None)

    @property
    def directory(self) -> Path:
        """Where `@./…` patch references are resolved from."""
        return self.path.parent


def talos_dir(root: Path) -> Path:
    return Path(root) / TALOS_DIR


def load_talenv(path: Path) -> dict[str, str]:
    """talenv.yaml's variables (a flat map); an absent file means none."""
    if not path.is_file():
        return {}
    text = _read(path)
    try:
        docs = load_documents(text)
    except YamlLoadError as exc:
        raise TalConfigError(f"{path}:{exc.line}: not valid YAML: {exc.reason}") from None
    env: dict[str, str] = {}
    for doc in docs:
        if not isinstance(doc, Mapping):
            raise TalConfigError(f"{path}:{line_of(doc)}: expected a map of variables")
        for key, value in doc.items():
            if isinstance(value, Mapping | list):
                raise TalConfigError(f"{path}:{line_of(doc, key)}: {key} is not a scalar")
            env[str(key)] = "" if value is None else str(to_plain(value))
    return env


def substitute(text: str, env: Mapping[str, str], file: Path) -> str:
    """`${VAR}` / `${VAR:-default}` replaced line by line; an unset variable is refused."""
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        if "${" not in line:
            continue

        def value(match: re.Match[str], number: int = number) -> str:
            name, default = match.group(1), match.group(2)
            found = env.get(name, os.environ.get(name))
            if found is None or (found == "" and default is not None):
                if default is None:
                    raise TalConfigError(f"{file}:{number}: ${{{name}}} is not set in {TALENV}")
                return default
            return found

        lines[number - 1] = _VAR.sub(value, line)
    return "".join(lines)


def load_talconfig(root: Path) -> TalConfig:
    """The repo's kubernetes/bootstrap/talos/talconfig.yaml, validated; errors name file:line."""
    directory = talos_dir(root)
    path = directory / TALCONFIG
    env = load_talenv(directory / TALENV)
    text = substitute(_read(path), env, path)
    try:
        docs = load_documents(text)
    except YamlLoadError as exc:
        raise TalConfigError(f"{path}:{exc.line}: not valid YAML: {exc.reason}") from None
    if len(docs) != 1 or not isinstance(docs[0], Mapping):
        raise TalConfigError(f"{path}:1: expected one YAML document (a map)")
    return _parse(docs[0], path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise TalConfigError(f"{path}: {reason}") from None


def _parse(doc: Any, path: Path) -> TalConfig:
    where = _Where(path, doc)
    where.only(doc, _TOP_KEYS, "talconfig")
    cluster_name = where.text(doc, "clusterName")
    endpoint = where.text(doc, "endpoint")
    if not endpoint.startswith(("https://", "http://")):
        raise where.error(doc, "endpoint", f"endpoint {endpoint!r} is not an https:// URL")
    talos_version = "v" + where.text(doc, "talosVersion").removeprefix("v")
    kubernetes_version = "v" + where.text(doc, "kubernetesVersion").removeprefix("v")
    groups = {}
    for group in ("controlPlane", "worker"):
        section = doc.get(group) or {}
        if not isinstance(section, Mapping):
            raise where.error(doc, group, f"{group} must be a map")
        where.only(section, _GROUP_KEYS, group)
        groups[group] = where.strings(section, "patches")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise where.error(doc, "nodes", "no nodes")
    nodes = tuple(
        _node(raw, index, where, talos_version, groups) for index, raw in enumerate(raw_nodes)
    )
    seen: set[str] = set()
    for node in nodes:
        if node.hostname in seen:
            raise TalConfigError(f"{path}:{node.line}: hostname {node.hostname} appears twice")
        seen.add(node.hostname)
    cni = doc.get("cniConfig")
    if cni is not None and not isinstance(cni, Mapping):
        raise where.error(doc, "cniConfig", "cniConfig must be a map")
    allow = doc.get("allowSchedulingOnControlPlanes", False)
    return TalConfig(
        cluster_name=cluster_name,
        endpoint=endpoint,
        talos_version=talos_version,
        talos_version_line=line_of(doc, "talosVersion"),
        kubernetes_version=kubernetes_version,
        nodes=nodes,
        path=path,
        pod_subnets=where.strings(doc, "clusterPodNets") or ("10.244.0.0/16",),
        service_subnets=where.strings(doc, "clusterSvcNets") or ("10.96.0.0/12",),
        cni=to_plain(cni) if cni is not None else None,
        dns_domain=str(doc.get("domain") or "cluster.local"),
        allow_scheduling_on_control_planes=bool(allow),
        api_server_cert_sans=where.strings(doc, "additionalApiServerCertSans"),
        machine_cert_sans=where.strings(doc, "additionalMachineCertSans"),
        patches=where.strings(doc, "patches"),
    )


def _node(
    raw: Any, index: int, where: _Where, talos_version: str, groups: Mapping[str, tuple[str, ...]]
) -> TalNode:
    line = line_of(where.doc["nodes"], index)
    if not isinstance(raw, Mapping):
        raise TalConfigError(f"{where.path}:{line}: nodes[{index}] is not a map")
    hostname = where.text(raw, "hostname")
    where.only(raw, _NODE_KEYS, f"node {hostname}")
    ip = where.text(raw, "ipAddress").split(",")[0].strip()
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        reason = f"node {hostname}: {ip!r} is not an IP address"
        raise where.error(raw, "ipAddress", reason) from None
    url = where.text(raw, "talosImageURL", f"node {hostname}: no talosImageURL")
    control_plane = raw.get("controlPlane", False)
    if not isinstance(control_plane, bool):
        raise where.error(raw, "controlPlane", f"node {hostname}: controlPlane is not a boolean")
    interfaces = raw.get("networkInterfaces") or []
    if not isinstance(interfaces, list):
        raise where.error(raw, "networkInterfaces", f"node {hostname}: not a list")
    macs = []
    for number, interface in enumerate(interfaces):
        if not isinstance(interface, Mapping):
            raise where.error(raw, "networkInterfaces", f"node {hostname}: [{number}] not a map")
        selector = interface.get("deviceSelector") or {}
        mac = selector.get("hardwareAddr") if isinstance(selector, Mapping) else None
        if mac:
            macs.append(str(mac).lower())
    own = where.strings(raw, "patches")
    role = (
        () if raw.get("overridePatches") else groups["controlPlane" if control_plane else "worker"]
    )
    return TalNode(
        hostname=hostname,
        ip=ip,
        control_plane=control_plane,
        install_disk=str(raw.get("installDisk") or ""),
        image=f"{url}:{talos_version}",
        macs=tuple(macs),
        patches=own,
        line=line,
        role_patches=role,
        interfaces=tuple(to_plain(i) for i in interfaces),
        cert_sans=where.strings(raw, "certSANs"),
    )


@dataclass(frozen=True)
class _Where:
    """Builds file:line errors for keys of the parsed talconfig."""

    path: Path
    doc: Any

    def error(self, node: Any, key: str, reason: str) -> TalConfigError:
        line = line_of(node, key) if key in node else line_of(node)
        return TalConfigError(f"{self.path}:{line}: {reason}")

    def only(self, node: Mapping[str, Any], known: set[str], what: str) -> None:
        for key in node:
            if key not in known:
                raise self.error(
                    node,
                    key,
                    f"{what}: {key} is not supported by dapper-tui talos genconfig "
                    "(use talhelper, or a patch)",
                )

    def text(self, node: Mapping[str, Any], key: str, missing: str = "") -> str:
        value = node.get(key)
        if value is None or str(value).strip() == "":
            raise self.error(node, key, missing or f"{key} is required")
        if isinstance(value, Mapping | list):
            raise self.error(node, key, f"{key} must be a string")
        return str(value).strip()

    def strings(self, node: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or any(isinstance(v, Mapping | list) for v in value):
            raise self.error(node, key, f"{key} must be a list of strings")
        return tuple(str(v) for v in value)
