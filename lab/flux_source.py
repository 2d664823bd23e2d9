"""What the lab's Flux twin reads: the tree at the remote's head, built and decrypted.

One `Snapshot` per commit of the bare remote (the GitRepository artifact): the parsed
FluxTree plus, per Kustomization, its rendered objects built the way kustomize-controller
builds them, resource by resource: a SOPS Secret decrypted in memory with the
Kustomization's own keys (only with spec.decryption; without it the Secret keeps its
`sops` block and the apply refuses it), then postBuild substitution with the variables
the twin read from the live ConfigMaps and Secrets. Snapshots are cached by commit and
builds by (commit, Kustomization, keys and variables), so a periodic reconcile of an
unchanged tree costs no parsing, age decryption or substitution. Decrypted values only
ever live in these in-memory objects.

Decryption works on the source file as committed (the MAC covers it exactly), then the
values are placed into the rendered object, which kustomize may have renamed or labelled.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2
from dapper.backends.gitops.fluxtree import FluxKustomization, FluxTree, substitute_tree
from dapper.backends.gitops.postbuild import (
    EnvsubstError,
    check_names,
    is_disabled,
    post_build_error,
)
from dapper.backends.gitops.treesource import GitTreeSource, SourceError, read_text, walk
from dapper.backends.gitops.yamldocs import TreeError, parse_file, strip_markers
from dapper.backends.sops.errors import SopsError
from dapper.backends.sops.file import decrypt_text
from dapper.lab.flux_status import ARTIFACT_FAILED, BUILD_FAILED
from ruamel.yaml.scalarbool import ScalarBoolean

log = logging.getLogger("dapper.lab.flux_source")

Key = tuple[str, str]
# what the bootstrap's flux-secrets step applies into flux-system before Flux starts (the
# running lab stands for a bootstrapped cluster, so the twin seeds what is missing)
BOOTSTRAP_FILES = (
    "kubernetes/components/common/substitutions/cluster-settings.yaml",
    "kubernetes/components/common/substitutions/cluster-secrets.sops.yaml",
)


@dataclass
class Build:
    """A Kustomization's objects at one commit, or why there are none."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""  # "" on success, else ArtifactFailed / BuildFailed
    message: str = ""


@dataclass
class Snapshot:
    branch: str
    sha: str
    tree: FluxTree
    secret_errors: dict[Key, str] = field(default_factory=dict)  # substituteFrom Secrets
    builds: dict[Key, tuple[tuple[Any, ...], Build]] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return f"{self.branch}@sha1:{self.sha}"


class _Decryptor:
    """Decrypts each SOPS file of one commit at most once."""

    def __init__(self, source: GitTreeSource, identities: Iterable[Any]) -> None:
        self.source = source
        self.identities = list(identities)
        self._files: dict[str, list[dict[str, Any]] | SopsError] = {}
        self._secrets: dict[str, list[str]] | None = None  # Secret name -> sops files

    def documents(self, path: str) -> list[dict[str, Any]]:
        """Decrypted documents of a file (plain data); raises SopsError."""
        hit = self._files.get(path)
        if hit is None:
            try:
                text = read_text(self.source, path)
                doc = decrypt_text(text, self.identities, source=path)
                hit = [_plain(d) for d in doc.documents]
            except SopsError as exc:
                hit = exc
            except SourceError as exc:
                hit = SopsError(str(exc))
            self._files[path] = hit
        if isinstance(hit, SopsError):
            raise hit
        return hit

    def secret_files(self, name: str) -> list[str]:
        if self._secrets is None:
            self._secrets = {}
            for path in walk(self.source, "kubernetes") if self.source.is_dir("kubernetes") else ():
                if not path.endswith((".sops.yaml", ".sops.yml")):
                    continue
                try:
                    docs = parse_file(self.source, path)
                except (TreeError, SourceError):
                    continue
                for data, _line in docs:
                    if isinstance(data, dict) and data.get("kind") == "Secret":
                        sname = str((data.get("metadata") or {}).get("name", ""))
                        self._secrets.setdefault(sname, []).append(path)
        return self._secrets.get(name, [])

    def secret_values(self, name: str) -> dict[str, str]:
        """Decrypted, decoded values of the Secret `name` (the first file defining it)."""
        for path in self.secret_files(name):
            for doc in self.documents(path):
                if doc.get("kind") == "Secret" and (doc.get("metadata") or {}).get("name") == name:
                    return secret_plaintext(doc)
        return {}


def secret_plaintext(doc: Mapping[str, Any]) -> dict[str, str]:
    """stringData as is and data base64-decoded (as the API server merges them)."""
    out: dict[str, str] = {}
    for k, v in (doc.get("data") or {}).items():
        try:
            out[str(k)] = base64.b64decode(str(v)).decode()
        except (ValueError, UnicodeDecodeError):
            out[str(k)] = str(v)
    for k, v in (doc.get("stringData") or {}).items():
        out[str(k)] = "" if v is None else str(v)
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, ScalarBoolean):
        return bool(node)
    for kind in (str, int, float):  # ruamel's Scalar* subclasses -> plain values
        if isinstance(node, kind):
            return kind(node)
    return str(node)


@dataclass(frozen=True)
class Inputs:
    """What a Kustomization's build takes from the cluster, read live by the twin: its
    decryption keys (None without spec.decryption) and its postBuild variables (None
    without spec.postBuild; a string when loading them failed, kustomize-controller's
    message)."""

    identities: tuple[Any, ...] | None = None
    variables: Mapping[str, str] | str | None = None
    strict: bool = False

    def fingerprint(self) -> tuple[Any, ...]:
        keys = None
        if self.identities is not None:
            keys = tuple(sorted(str(i.to_public()) for i in self.identities))
        values = self.variables
        if isinstance(values, Mapping):
            values = tuple(sorted(values.items()))
        return (keys, values, self.strict)


class FluxSource:
    """Snapshots of the remote's head, cached by commit (the last few are kept)."""

    KEEP = 3

    def __init__(self, repo_path: str, identities: Iterable[Any] | Callable[[], list[Any]]) -> None:
        self.repo_path = repo_path
        # a callable is asked on every snapshot: the twin passes the live sops-age Secret's
        # keys (they decrypt what the tree's own parse needs), so a changed Secret takes
        # effect on the next reconcile, as with real Flux
        fixed = [] if callable(identities) else list(identities)
        self._identities = identities if callable(identities) else (lambda: fixed)
        self._snapshots: dict[str, tuple[Snapshot, _Decryptor, tuple[str, ...]]] = {}
        # (commit, public keys) -> decryptor: a Kustomization decrypts with its own keys
        self._decryptors: dict[tuple[str, tuple[str, ...]], _Decryptor] = {}

    def snapshot(self, branch: str, sha: str) -> Snapshot:
        identities = list(self._identities())
        keys = tuple(sorted(str(i.to_public()) for i in identities))
        hit = self._snapshots.get(sha)
        if hit is not None and hit[2] == keys:
            return hit[0]
        repo = pygit2.Repository(self.repo_path)
        source = GitTreeSource(repo, sha)
        decryptor = _Decryptor(source, identities)
        errors: dict[Key, str] = {}

        def values(namespace: str, name: str) -> Mapping[str, str] | None:
            try:
                return decryptor.secret_values(name)
            except SopsError as exc:
                errors[(namespace, name)] = str(exc)
                return None

        tree = FluxTree.load(source, secret_values=values)
        snap = Snapshot(branch, sha, tree, errors)
        self._snapshots.pop(sha, None)
        self._snapshots[sha] = (snap, decryptor, keys)
        while len(self._snapshots) > self.KEEP:
            self._snapshots.pop(next(iter(self._snapshots)))
        for old in [k for k in self._decryptors if k[0] not in self._snapshots]:
            del self._decryptors[old]
        return snap

    def decryptor(self, sha: str, identities: Iterable[Any]) -> _Decryptor:
        ids = list(identities)
        keys = tuple(sorted(str(i.to_public()) for i in ids))
        snap = self._snapshots[sha]
        if snap[2] == keys:  # the keys the tree's own parse used: its files are decrypted
            return snap[1]
        hit = self._decryptors.get((sha, keys))
        if hit is None:
            hit = self._decryptors[(sha, keys)] = _Decryptor(snap[1].source, ids)
        return hit

    def build(self, snap: Snapshot, ks: FluxKustomization, inputs: Inputs | None = None) -> Build:
        """The objects `ks` applies at the snapshot's commit, built as kustomize-controller
        builds them from what the cluster holds now (`inputs`): each object decrypted with
        the Kustomization's own keys, then substituted with its live variables. Cached per
        commit until the inputs change."""
        inputs = inputs or Inputs()
        mark = inputs.fingerprint()
        hit = snap.builds.get(ks.key)
        if hit is None or hit[0] != mark:
            hit = (mark, self._build(snap, ks, inputs))
            snap.builds[ks.key] = hit
        return hit[1]

    def has_dir(self, sha: str, path: str) -> bool:
        """The commit has directory `path` (a Kustomization's spec.path)."""
        clean = path.strip().removeprefix("./").strip("/")
        if not clean:
            return True
        hit = self._snapshots.get(sha)
        source = hit[1].source if hit else GitTreeSource(pygit2.Repository(self.repo_path), sha)
        return source.is_dir(clean)

    def seed_objects(self, snap: Snapshot, namespace: str) -> list[dict[str, Any]]:
        """What a bootstrap applies into `namespace` before Flux starts (cluster-settings
        and cluster-secrets, decrypted in memory with the snapshot's keys), as the tree
        holds them at this commit; nothing it cannot read or decrypt."""
        decryptor = self._snapshots[snap.sha][1]
        out: list[dict[str, Any]] = []
        for path in BOOTSTRAP_FILES:
            try:
                if _is_sops_path(path):
                    docs = decryptor.documents(path)
                else:
                    docs = [_plain(d) for d, _line in parse_file(decryptor.source, path)]
            except (SopsError, TreeError, SourceError) as exc:
                log.info("lab Flux: %s not seeded: %s", path, exc)
                continue
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") in ("ConfigMap", "Secret"):
                    obj = {k: v for k, v in doc.items() if k != "sops"}
                    obj.setdefault("apiVersion", "v1")
                    obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": namespace}
                    out.append(obj)
        return out

    def _build(self, snap: Snapshot, ks: FluxKustomization, inputs: Inputs) -> Build:
        if not self.has_dir(snap.sha, ks.path):
            return path_not_found(ks.path)
        try:
            pairs = snap.tree.render_unsubstituted(ks)
        except TreeError as exc:
            return Build(reason=BUILD_FAILED, message=str(exc))
        decryptor = None
        if inputs.identities is not None:
            decryptor = self.decryptor(snap.sha, inputs.identities)
        objects: list[dict[str, Any]] = []
        for d, raw in pairs:  # kustomize-controller's build(), resource by resource
            obj = raw
            meta = obj.get("metadata") or {}
            name = str(meta.get("name", ""))
            if decryptor is not None and obj.get("kind") == "Secret" and _is_sops_path(d.file):
                try:
                    obj = _decrypted(obj, d.file, d.line, decryptor)
                except SopsError as exc:
                    ns = ks.target_namespace or meta.get("namespace") or ""
                    return Build(  # kustomize-controller's build() and decryptor wording
                        reason=BUILD_FAILED,
                        message=f"decryption failed for '{name}': failed to decrypt and "
                        f"format '{ns}/{name}' Secret data: {exc}",
                    )
            if inputs.variables is not None and not is_disabled(obj):
                if isinstance(inputs.variables, str):
                    message = f"post build failed for '{name}': {inputs.variables}"
                    return Build(reason=BUILD_FAILED, message=message)
                if inputs.variables:  # no variables: Flux leaves the text alone
                    try:
                        check_names(inputs.variables)
                        obj = substitute_tree(obj, inputs.variables, strict=inputs.strict)
                    except EnvsubstError as exc:
                        return Build(reason=BUILD_FAILED, message=post_build_error(obj, exc))
            objects.append(strip_markers(obj))
        return Build(objects)


def path_not_found(path: str) -> Build:
    """kustomize-controller's missing-path failure (before the attempt is recorded)."""
    clean = path.strip().removeprefix("./").strip("/")
    return Build(
        reason=ARTIFACT_FAILED,
        message=f"kustomization path not found: stat /tmp/kustomization-1/{clean}: "
        "no such file or directory",
    )


def _is_sops_path(path: str) -> bool:
    return path.endswith((".sops.yaml", ".sops.yml"))


def _decrypted(obj: dict[str, Any], path: str, line: int, decryptor: _Decryptor) -> dict[str, Any]:
    """The rendered Secret with its values from the decrypted source document."""
    raw = parse_file(decryptor.source, path)
    index = next((i for i, (_d, ln) in enumerate(raw) if ln == line), None)
    first = raw[0][0] if raw else None
    if not isinstance(first, dict) or "sops" not in first:
        return obj  # not encrypted (yet): applied as written, like Flux would
    docs = decryptor.documents(path)
    source = docs[index] if index is not None and index < len(docs) else None
    if source is None:
        raise SopsError(f"{path}: document at line {line} not found after decryption")
    out = copy.deepcopy(obj)
    out.pop("sops", None)
    for field_name in ("data", "stringData"):
        if field_name in source:
            out[field_name] = copy.deepcopy(source[field_name])
        else:
            out.pop(field_name, None)
    return out
