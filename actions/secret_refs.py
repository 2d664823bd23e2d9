"""Where a SOPS Secret lives in the tree and which workloads consume it.

Built on the parsed Flux tree: a SOPS file's owning Kustomization, the Secret's final
name and namespace after kustomize (targetNamespace, prefixes), and the Deployments,
StatefulSets, DaemonSets, CronJobs and HelmReleases in that namespace that reference it
(env valueFrom/envFrom, volumes, projected volumes; any string equal to the name in
HelmRelease values). Reloader annotations tell which of them restart on their own.
Nothing is decrypted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.backends.gitops.fluxtree import FluxTree
from dapper.backends.sops.secret import encrypted_keys

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job")
RELOADER_AUTO = "reloader.stakater.com/auto"
RELOADER_SECRETS = "secret.reloader.stakater.com/reload"


@dataclass(frozen=True)
class SecretFile:
    path: str  # repo-relative
    owner: tuple[str, str] | None  # (namespace, name) of the Flux Kustomization
    secret: tuple[str, str] | None  # (namespace, name) of the Secret it applies
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Consumer:
    kind: str  # Deployment, StatefulSet, ..., or HelmRelease
    namespace: str
    name: str
    how: str  # "env", "envFrom", "volume", "values"
    reloads: bool  # a Reloader annotation restarts it when the Secret changes

    @property
    def restart_target(self) -> tuple[str, str, str]:
        """What `rollout restart` acts on: the workload, or the Deployment a release runs."""
        return (
            "Deployment" if self.kind == "HelmRelease" else self.kind,
            self.namespace,
            self.release_name,
        )

    @property
    def release_name(self) -> str:
        return self.name

    def describe(self) -> str:
        tail = "restarted by Reloader" if self.reloads else "needs a rollout restart"
        return f"{self.kind} {self.namespace}/{self.name} ({self.how}; {tail})"


_TREES: dict[tuple[str, str], FluxTree] = {}


def load_tree(root: Path, head: str = "") -> FluxTree:
    """The parsed tree of a checkout; with `head` (the commit it is at, its only changes
    being SOPS ciphertext, as runbooks ensure) a parse is reused for the same commit."""
    if not head:
        return FluxTree.load(root)
    key = (str(root), head)
    tree = _TREES.get(key)
    if tree is None:
        tree = FluxTree.load(root)
        while len(_TREES) >= 4:
            _TREES.pop(next(iter(_TREES)))
        _TREES[key] = tree
    return tree


def _secret_of(tree: FluxTree, path: str) -> tuple[str, str] | None:
    owner = tree.owner_of(path)
    if owner is None:
        return None
    try:
        docs = tree.render(owner)
    except Exception:  # a broken Kustomization: the file still gets listed
        return None
    for d in docs:
        if d.file == path and d.obj.get("kind") == "Secret":
            meta = d.obj.get("metadata") or {}
            return (
                str(meta.get("namespace") or owner.target_namespace or ""),
                str(meta.get("name", "")),
            )
    return None


def secret_files(tree: FluxTree, root: Path) -> list[SecretFile]:
    """Every SOPS file holding a Kubernetes Secret, with its owner; sorted by path."""
    out = []
    for f in sorted(tree.sops_files, key=lambda s: s.path):
        try:
            keys = tuple(encrypted_keys(root / f.path))
        except Exception:
            keys = ()
        if not keys:
            continue
        out.append(SecretFile(f.path, f.owner, _secret_of(tree, f.path), keys))
    return out


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def _pod_refs(pod: dict[str, Any], name: str) -> list[str]:
    hows: list[str] = []
    for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for env in c.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef")) or {}
            if ref.get("name") == name:
                hows.append("env")
        for src in c.get("envFrom") or []:
            if (src.get("secretRef") or {}).get("name") == name:
                hows.append("envFrom")
    for vol in pod.get("volumes") or []:
        if (vol.get("secret") or {}).get("secretName") == name:
            hows.append("volume")
        for src in ((vol.get("projected") or {}).get("sources")) or []:
            if (src.get("secret") or {}).get("name") == name:
                hows.append("volume")
    return sorted(set(hows))


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _annotations(node: Any) -> Iterator[dict[str, Any]]:
    """Every `annotations` mapping anywhere in a structure (chart values nest them)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("annotations", "podAnnotations") and isinstance(v, dict):
                yield v
            yield from _annotations(v)
    elif isinstance(node, list):
        for v in node:
            yield from _annotations(v)


def _reloads(annotation_maps: list[dict[str, Any]], name: str) -> bool:
    for ann in annotation_maps:
        if str(ann.get(RELOADER_AUTO, "")).lower() == "true":
            return True
        names = [n.strip() for n in str(ann.get(RELOADER_SECRETS, "")).split(",")]
        if name in names:
            return True
    return False


def consumers(tree: FluxTree, namespace: str, name: str) -> list[Consumer]:
    """Workloads in `namespace` that reference the Secret `name`, from every Kustomization."""
    out: dict[tuple[str, str], Consumer] = {}
    for ks in tree.kustomizations:
        try:
            objs = tree.build(ks)
        except Exception:
            continue
        for obj in objs:
            kind = obj.get("kind")
            meta = obj.get("metadata") or {}
            if str(meta.get("namespace") or ks.target_namespace or "") != namespace:
                continue
            wname = str(meta.get("name", ""))
            if kind in WORKLOAD_KINDS:
                hows = _pod_refs(_pod_spec(obj), name)
                if hows:
                    spec = obj.get("spec") or {}
                    tmpl_meta = (spec.get("template") or {}).get("metadata") or {}
                    maps = [meta.get("annotations") or {}, tmpl_meta.get("annotations") or {}]
                    out[(kind, wname)] = Consumer(
                        kind, namespace, wname, "/".join(hows), _reloads(maps, name)
                    )
            elif kind == "HelmRelease":
                spec = obj.get("spec") or {}
                values = spec.get("values") or {}
                if name in set(_strings(values)):
                    release = str(spec.get("releaseName") or wname)
                    out[(kind, wname)] = _Release(
                        kind,
                        namespace,
                        wname,
                        "values",
                        _reloads(list(_annotations(values)), name),
                        release,
                    )
    return sorted(out.values(), key=lambda c: (c.kind, c.name))


@dataclass(frozen=True)
class _Release(Consumer):
    release: str = ""

    @property
    def release_name(self) -> str:
        return self.release or self.name
