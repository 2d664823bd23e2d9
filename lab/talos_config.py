"""Machine configs as Talos v1.11 loads and validates them, for the lab's apid.

Talos decodes every YAML document of the config (a `kind` selects a typed document; a
document with `version: v1alpha1` or a legacy `machine`/`cluster` key is the v1alpha1
config), refuses keys its types do not know ("unknown keys found during decoding"), then
validates the v1alpha1 document and reports every problem at once in go-multierror's
format. Only the rules a runbook can trip over are modelled: the machine type, the
issuing CA (and its key only on control planes), the Kubernetes CA key only on control
planes, the cluster section and its control-plane endpoint, and the key names of the
sections the lab's configs use.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

ANY = None  # a section whose own keys the lab does not check

# Known keys of the v1alpha1 document (pkg/machinery/config/types/v1alpha1), one level
# deep for most sections and deeper where the lab's configs go.
_CERT = {"crt": ANY, "key": ANY}
_MACHINE: dict[str, Any] = {
    "type": ANY,
    "token": ANY,
    "ca": _CERT,
    "acceptedCAs": ANY,
    "certSANs": ANY,
    "controlPlane": ANY,
    "kubelet": ANY,
    "pods": ANY,
    "network": {
        "hostname": ANY,
        "interfaces": ANY,
        "nameservers": ANY,
        "extraHostEntries": ANY,
        "kubespan": ANY,
        "disableSearchDomain": ANY,
        "searchDomains": ANY,
    },
    "disks": ANY,
    "install": {
        "disk": ANY,
        "diskSelector": ANY,
        "image": ANY,
        "extraKernelArgs": ANY,
        "wipe": ANY,
        "legacyBIOSSupport": ANY,
        "extensions": ANY,
        "grubUseUKICmdline": ANY,
    },
    "files": ANY,
    "env": ANY,
    "time": ANY,
    "sysctls": ANY,
    "sysfs": ANY,
    "registries": ANY,
    "systemDiskEncryption": ANY,
    "features": ANY,
    "udev": ANY,
    "logging": ANY,
    "kernel": ANY,
    "seccompProfiles": ANY,
    "baseRuntimeSpecOverrides": ANY,
    "nodeLabels": ANY,
    "nodeAnnotations": ANY,
    "nodeTaints": ANY,
}
_CLUSTER: dict[str, Any] = {
    "id": ANY,
    "secret": ANY,
    "controlPlane": {"endpoint": ANY, "localAPIServerPort": ANY},
    "clusterName": ANY,
    "network": ANY,
    "token": ANY,
    "aescbcEncryptionSecret": ANY,
    "secretboxEncryptionSecret": ANY,
    "ca": _CERT,
    "acceptedCAs": ANY,
    "aggregatorCA": _CERT,
    "serviceAccount": ANY,
    "apiServer": ANY,
    "controllerManager": ANY,
    "proxy": ANY,
    "scheduler": ANY,
    "discovery": ANY,
    "etcd": ANY,
    "coreDNS": ANY,
    "externalCloudProvider": ANY,
    "extraManifests": ANY,
    "extraManifestHeaders": ANY,
    "inlineManifests": ANY,
    "adminKubeconfig": ANY,
    "allowSchedulingOnControlPlanes": ANY,
    "allowSchedulingOnMasters": ANY,
}
_V1ALPHA1: dict[str, Any] = {
    "version": ANY,
    "debug": ANY,
    "persist": ANY,
    "machine": _MACHINE,
    "cluster": _CLUSTER,
}
MACHINE_TYPES = ("init", "controlplane", "worker")


class ConfigError(ValueError):
    """The config does not load (`parse`) or does not validate (`validation`)."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class NetworkInterface:
    """One entry of .machine.network.interfaces, as far as the lab follows it."""

    name: str  # .interface ("" when selected by device)
    hardware_addr: str  # .deviceSelector.hardwareAddr, lower case ("" when absent)
    addresses: tuple[str, ...]  # static CIDRs, e.g. 10.100.0.55/24
    dhcp: bool


@dataclass(frozen=True)
class MachineConfig:
    """What the lab needs from a loaded, valid v1alpha1 config."""

    role: str  # controlplane (init counts as one) or worker
    hostname: str
    os_ca_crt: str  # the PEM text of .machine.ca.crt, "" when absent
    token: str  # .cluster.token (the Kubernetes bootstrap token)
    install_disk: str
    document: dict[str, Any]
    machine_token: str = ""  # .machine.token (trustd's token for the machine)
    interfaces: tuple[NetworkInterface, ...] = ()


def multierror(problems: list[str]) -> str:
    """go-multierror's text for a list of errors."""
    head = "1 error occurred" if len(problems) == 1 else f"{len(problems)} errors occurred"
    return head + ":\n" + "".join(f"\t* {p}\n" for p in problems) + "\n"


def load(data: bytes) -> MachineConfig:
    """Decode and validate `data` as Talos does; ConfigError says what is wrong."""
    documents = _decode(data)
    v1alpha1 = [d for d in documents if _is_v1alpha1(d)]
    if not v1alpha1:
        raise ConfigError(
            "the applied machine configuration doesn't contain v1alpha1 config, "
            "did you mean to patch the machine config instead?",
            "validation",
        )
    if len(v1alpha1) > 1:
        raise ConfigError('duplicate document: "v1alpha1"', "parse")
    doc = v1alpha1[0]
    unknown = _unknown_keys(doc, _V1ALPHA1)
    if unknown:
        raise ConfigError("unknown keys found during decoding:\n" + _go_yaml(unknown), "parse")
    problems = validate(doc)
    if problems:
        raise ConfigError(multierror(problems), "validation")
    machine = doc["machine"]
    cluster = doc.get("cluster") or {}
    role = "controlplane" if machine.get("type") == "init" else str(machine.get("type"))
    return MachineConfig(
        role=role,
        hostname=str((machine.get("network") or {}).get("hostname") or ""),
        os_ca_crt=_pem((machine.get("ca") or {}).get("crt")),
        token=str(cluster.get("token") or ""),
        install_disk=str((machine.get("install") or {}).get("disk") or ""),
        document=doc,
        machine_token=str(machine.get("token") or ""),
        interfaces=_interfaces((machine.get("network") or {}).get("interfaces")),
    )


def _interfaces(raw: Any) -> tuple[NetworkInterface, ...]:
    """The interface entries the lab can read (others are skipped, not refused)."""
    if not isinstance(raw, list):
        return ()
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        selector = entry.get("deviceSelector")
        mac = selector.get("hardwareAddr") if isinstance(selector, dict) else None
        addresses = entry.get("addresses")
        out.append(
            NetworkInterface(
                name=str(entry.get("interface") or ""),
                hardware_addr=str(mac or "").lower(),
                addresses=tuple(str(a) for a in addresses) if isinstance(addresses, list) else (),
                dhcp=bool(entry.get("dhcp")),
            )
        )
    return tuple(out)


def validate(doc: dict[str, Any]) -> list[str]:
    """The v1alpha1 validation problems the lab models, in Talos's order and words."""
    machine = doc.get("machine")
    if not isinstance(machine, dict):
        return ["machine instructions are required"]
    problems: list[str] = []
    mtype = machine.get("type")
    controlplane = mtype in ("init", "controlplane")
    cluster = doc.get("cluster")
    if not isinstance(cluster, dict):
        problems.append("cluster instructions are required")
    else:
        endpoint = (cluster.get("controlPlane") or {}).get("endpoint")
        if not endpoint:
            problems.append("cluster controlplane endpoint is required")
        else:
            url = urlparse(str(endpoint))
            if url.scheme not in ("http", "https") or not url.hostname:
                problems.append(
                    f'invalid controlplane endpoint: parse "{endpoint}": invalid URI for request'
                )
    ca = machine.get("ca") if isinstance(machine.get("ca"), dict) else None
    if ca is None and not machine.get("acceptedCAs"):
        problems.append(
            "issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)"
        )
    if controlplane:
        if ca is None:
            problems.append("issuing CA is required (.machine.ca)")
        elif not ca.get("key"):
            problems.append("issuing CA key is required for controlplane nodes (.machine.ca.key)")
    elif mtype == "worker":
        if ca is not None and ca.get("key"):
            problems.append(
                "issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)"
            )
        cluster_ca = (cluster or {}).get("ca") if isinstance(cluster, dict) else None
        if isinstance(cluster_ca, dict) and cluster_ca.get("key"):
            problems.append(
                "issuing Kubernetes API CA key is not allowed on non-controlplane nodes "
                "(.cluster.ca)"
            )
    else:
        problems.append(f'unknown machine type "{mtype if mtype is not None else ""}"')
    return problems


def _decode(data: bytes) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        docs = [d for d in YAML(typ="safe").load_all(data.decode("utf-8")) if d is not None]
    except (YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        problem = first[0] if first else "invalid document"
        raise ConfigError(f"decode error: yaml: {problem}", "parse") from exc
    if not docs:
        raise ConfigError("config not found", "parse")
    for doc in docs:
        if not isinstance(doc, dict):
            raise ConfigError("expected a document", "parse")
        if not _is_v1alpha1(doc) and "kind" not in doc:
            raise ConfigError("missing kind", "parse")
    return docs


def _is_v1alpha1(doc: dict[str, Any]) -> bool:
    """Talos's decoder: version v1alpha1 without a kind, or any legacy top-level key."""
    legacy = any(k in doc for k in ("machine", "cluster", "debug", "persist"))
    return "kind" not in doc and (doc.get("version") == "v1alpha1" or legacy)


def _unknown_keys(doc: Any, known: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in known:
            out[key] = value
        elif isinstance(known[key], dict):
            inner = _unknown_keys(value, known[key])
            if inner:
                out[key] = inner
    return out


def _go_yaml(value: Any, indent: int = 0) -> str:
    """A small block-YAML rendering with Go yaml.v3's four-space indentation."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{_go_yaml(v, indent + 4)}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, list):
        return "".join(f"{pad}- {_scalar(v)}\n" for v in value)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def _pem(b64: Any) -> str:
    """A base64 field of the config as PEM text ("" when absent or not base64)."""
    if not b64:
        return ""
    try:
        return base64.b64decode(str(b64), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
