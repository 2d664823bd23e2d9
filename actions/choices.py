"""Choices providers: where a runbook parameter's pickable values come from.

One class per kind of pick; each returns plain `Choice`s (value, label, detail lines), so
the console's form and the CLI render any of them without knowing what they are. They
read the repository (and may read backends) and never decrypt anything.
"""

from __future__ import annotations

from pathlib import Path

from dapper.actions.params import Choice, ChoiceContext, ChoicesProvider
from dapper.actions.secret_refs import load_tree, secret_files
from dapper.backends.gitops.yamldocs import parse_text
from dapper.backends.sops.secret import encrypted_keys

TALCONFIG = "kubernetes/bootstrap/talos/talconfig.yaml"


class SopsSecretFiles(ChoicesProvider):
    """The SOPS files that hold a Kubernetes Secret: path, owning Kustomization and key
    NAMES (never values)."""

    heading = "FILE  ·  applied by KUSTOMIZATION  ·  KEY NAMES"

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        root = ctx.repo_path
        out = []
        for f in secret_files(load_tree(root), root):
            owner = "/".join(f.owner) if f.owner else "no Kustomization applies it"
            out.append(Choice(f.path, detail=(f"→ {owner}  ·  keys: {', '.join(f.keys)}",)))
        return out


class SecretKeysOf(ChoicesProvider):
    """The key NAMES of the SOPS file chosen for another parameter."""

    heading = "KEY"

    def __init__(self, file_param: str) -> None:
        self.file_param = file_param
        self.depends_on = (file_param,)

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        rel = str(ctx.values.get(self.file_param) or "").strip()
        if not rel:
            return []
        return [Choice(k) for k in encrypted_keys(ctx.repo_path / rel)]


class TalosNodes(ChoicesProvider):
    """The nodes the tree declares in talconfig.yaml: hostname, role and address."""

    heading = "NODE  ·  ROLE  ·  ADDRESS"

    def __init__(self, talconfig: str = TALCONFIG) -> None:
        self.talconfig = talconfig

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        path = Path(ctx.repo_path) / self.talconfig
        docs = parse_text(path.read_text(), self.talconfig)
        data = docs[0][0] if docs else {}
        out = []
        for node in (data.get("nodes") if isinstance(data, dict) else None) or []:
            if not isinstance(node, dict) or not node.get("hostname"):
                continue
            role = "control plane" if node.get("controlPlane") else "worker"
            address = str(node.get("ipAddress") or "")
            detail = f"{role}  ·  {address}" if address else role
            out.append(Choice(str(node["hostname"]), detail=(detail,)))
        return out
