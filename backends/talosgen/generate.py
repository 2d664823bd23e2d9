"""Machine configs for the tree's nodes, as `talhelper genconfig` makes them, and writing them.

Per node: the v1alpha1 document Talos v1.11 generates (`machineconfig`), then the patches
in talhelper's real order (pkg/generate/config.go): the role's patches
(`controlPlane.patches` / `worker.patches`) and the node's own patches first, then the
global `patches`, each with Talos's merge rules (`talosmerge`). Files are named
`<clusterName>-<hostname>.yaml` (talhelper's default filenameTmpl) plus `talosconfig`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dapper.backends.private_files import open_private, private_dir
from dapper.backends.sops.keys import IdentityLike
from dapper.backends.talosgen.clientconfig import build_talosconfig
from dapper.backends.talosgen.machineconfig import base_config
from dapper.backends.talosgen.secrets import SecretBundle, load_secret_bundle
from dapper.backends.talosgen.talconfig import (
    TALENV,
    TalConfig,
    TalConfigError,
    TalNode,
    load_talconfig,
    load_talenv,
)
from dapper.backends.talosgen.talosmerge import ConfigPatch, apply_patch, load_patch
from dapper.backends.talosgen.yamlio import dump_documents

TALOSCONFIG_FILE = "talosconfig"


@dataclass(frozen=True)
class GeneratedConfigs:
    """Machine configs by hostname (YAML bytes, secrets inside: never log them)."""

    configs: dict[str, bytes] = field(repr=False)
    file_names: dict[str, str]
    talosconfig: bytes = field(repr=False)

    def config_for(self, hostname: str) -> bytes:
        try:
            return self.configs[hostname]
        except KeyError:
            known = ", ".join(self.configs)
            raise TalConfigError(
                f"no config generated for {hostname}; generated: {known}"
            ) from None


def select_nodes(talconfig: TalConfig, names: Iterable[str] | None) -> list[TalNode]:
    """The named nodes in talconfig order (all when `names` is None); unknown is refused."""
    if names is None:
        return list(talconfig.nodes)
    wanted = list(dict.fromkeys(names))
    for name in wanted:
        if talconfig.node(name) is None:
            known = ", ".join(n.hostname for n in talconfig.nodes)
            raise TalConfigError(f"no node {name} in talconfig.yaml; nodes: {known}")
    return [n for n in talconfig.nodes if n.hostname in wanted]


def node_patches(talconfig: TalConfig, node: TalNode) -> list[str]:
    """The patch references for `node` in the order talhelper applies them."""
    return [*node.role_patches, *node.patches, *talconfig.patches]


def render_node(
    talconfig: TalConfig,
    node: TalNode,
    bundle: SecretBundle,
    patches: dict[str, ConfigPatch],
) -> bytes:
    documents: list[object] = [base_config(talconfig, node, bundle)]
    for reference in node_patches(talconfig, node):
        documents = apply_patch(documents, patches[reference])
    return dump_documents(documents)


def generate_configs(
    root: Path,
    identities: Iterable[IdentityLike] | None,
    *,
    nodes: Iterable[str] | None = None,
    talos_endpoint: str = "",
    bundle: SecretBundle | None = None,
) -> GeneratedConfigs:
    """Configs for `nodes` (default: all) from the repo at `root`; nothing is written.
    The talosconfig's endpoints are the control planes, or `talos_endpoint` when given;
    `bundle` stands in for talsecret.sops.yaml (a bootstrap's new one, not written yet)."""
    root = Path(root)
    talconfig = load_talconfig(root)
    talconfig.check_modelled_version()
    chosen = select_nodes(talconfig, nodes)
    env = load_talenv(talconfig.directory / TALENV)
    patches: dict[str, ConfigPatch] = {}
    for node in chosen:
        for reference in node_patches(talconfig, node):
            if reference not in patches:
                patches[reference] = load_patch(reference, talconfig.directory, env)
    bundle = bundle or load_secret_bundle(root, identities)
    configs = {n.hostname: render_node(talconfig, n, bundle, patches) for n in chosen}
    names = {n.hostname: f"{talconfig.cluster_name}-{n.hostname}.yaml" for n in chosen}
    talosconfig = build_talosconfig(
        talconfig.cluster_name,
        [talos_endpoint] if talos_endpoint else [n.ip for n in talconfig.nodes if n.control_plane],
        [n.ip for n in talconfig.nodes],
        bundle.os,
    )
    return GeneratedConfigs(configs=configs, file_names=names, talosconfig=talosconfig)


def _write_private(path: Path, data: bytes) -> None:
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_configs(generated: GeneratedConfigs, out_dir: Path) -> list[Path]:
    """Each config and the talosconfig into `out_dir` (0700), files 0600; the paths written."""
    out_dir = private_dir(Path(out_dir))
    written = []
    for hostname, data in generated.configs.items():
        path = out_dir / generated.file_names[hostname]
        _write_private(path, data)
        written.append(path)
    path = out_dir / TALOSCONFIG_FILE
    _write_private(path, generated.talosconfig)
    written.append(path)
    return written
