"""The talhelper secret bundle (talsecret.sops.yaml), decrypted in memory only.

The bundle is Talos's `secrets.Bundle` as `talosctl gen secrets` / `talhelper gensecret`
write it: cluster.{id,secret}, secrets.{bootstraptoken, secretboxencryptionsecret or
aescbcencryptionsecret}, trustdinfo.token, and certs.{etcd, k8s, k8saggregator, os}
(crt and key, base64 PEM) plus certs.k8sserviceaccount.key. Nothing here is ever logged
and the bundle's repr shows no value. A missing or wrong age key raises the sops errors
(`NoKeyError`, `WrongKeyError`), whose one-line reason names talsecret.sops.yaml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapper.backends.sops.file import decrypt_file
from dapper.backends.sops.keys import IdentityLike
from dapper.backends.talosgen.talconfig import TalConfigError, talos_dir

TALSECRET = "talsecret.sops.yaml"


@dataclass(frozen=True)
class CertPair:
    """A base64 PEM certificate and its key, as the bundle and machine configs hold them."""

    crt: str = field(default="", repr=False)
    key: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return "CertPair(<redacted>)"


@dataclass(frozen=True)
class SecretBundle:
    """The cluster's secrets; which machine-config field each one fills is in `machineconfig`."""

    cluster_id: str = field(repr=False)
    cluster_secret: str = field(repr=False)
    bootstrap_token: str = field(repr=False)  # -> cluster.token
    secretbox_encryption_secret: str = field(repr=False)
    aescbc_encryption_secret: str = field(repr=False)
    trustd_token: str = field(repr=False)  # -> machine.token
    etcd: CertPair = field(repr=False)  # -> cluster.etcd.ca
    k8s: CertPair = field(repr=False)  # -> cluster.ca
    k8s_aggregator: CertPair = field(repr=False)  # -> cluster.aggregatorCA
    k8s_service_account_key: str = field(repr=False)  # -> cluster.serviceAccount.key
    os: CertPair = field(repr=False)  # -> machine.ca (the Talos API CA)
    source: Path = Path(TALSECRET)

    def __repr__(self) -> str:
        return f"SecretBundle({self.source.name}, <redacted>)"


def secret_path(root: Path) -> Path:
    return talos_dir(root) / TALSECRET


def load_secret_bundle(root: Path, identities: Iterable[IdentityLike] | None) -> SecretBundle:
    """Decrypt the repo's talsecret.sops.yaml with `identities` and check it is complete."""
    path = secret_path(root)
    document = decrypt_file(path, identities).documents[0]
    return parse_bundle(document, path)


def parse_bundle(document: Mapping[str, Any], path: Path) -> SecretBundle:
    """The bundle from its decrypted document; a missing field is a one-line refusal."""

    def get(dotted: str, required: bool = True) -> str:
        node: Any = document
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None or node == "":
            if required:
                raise TalConfigError(f"{path}: the secret bundle has no {dotted}")
            return ""
        if not isinstance(node, str | int):
            raise TalConfigError(f"{path}: the secret bundle's {dotted} is not a string")
        return str(node)

    def pair(name: str) -> CertPair:
        return CertPair(crt=get(f"certs.{name}.crt"), key=get(f"certs.{name}.key"))

    secretbox = get("secrets.secretboxencryptionsecret", required=False)
    aescbc = get("secrets.aescbcencryptionsecret", required=False)
    if bool(secretbox) == bool(aescbc):
        raise TalConfigError(
            f"{path}: the secret bundle needs exactly one of "
            "secrets.secretboxencryptionsecret and secrets.aescbcencryptionsecret"
        )
    return SecretBundle(
        cluster_id=get("cluster.id"),
        cluster_secret=get("cluster.secret"),
        bootstrap_token=get("secrets.bootstraptoken"),
        secretbox_encryption_secret=secretbox,
        aescbc_encryption_secret=aescbc,
        trustd_token=get("trustdinfo.token"),
        etcd=pair("etcd"),
        k8s=pair("k8s"),
        k8s_aggregator=pair("k8saggregator"),
        k8s_service_account_key=get("certs.k8sserviceaccount.key"),
        os=pair("os"),
        source=path,
    )
