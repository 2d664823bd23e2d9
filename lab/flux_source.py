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

A Kustomization builds what its live spec says (`build_live`): when the build fields
are what the tree declares, the tree's build is taken; otherwise the spec is rendered on
its own (cached per commit and spec), and a path the commit lacks is ArtifactFailed.

Decryption works on the source file as committed (the MAC covers it exactly), then the
values are placed into the rendered object, which kustomize may have renamed or labelled.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pygit2
from dapper.backends.gitops.fluxtree import FluxKustomization, FluxTree
from dapper.backends.gitops.postbuild import (
    EnvsubstError,
    check_names,
    is_disabled,
    post_build_error,
)
from dapper.backends.gitops.treesource import GitTreeSource, SourceError, read_text, walk
from dapper.backends.gitops.yamldocs import Doc, TreeError, parse_file, strip_markers
from dapper.backends.sops.errors import SopsError
from dapper.backends.sops.file import decrypt_text
from dapper.lab.flux_status import ARTIFACT_FAILED, BUILD_FAILED
from dapper.lab.flux_substitute import SubstitutionError, substitute_resource
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
    # live specs that differ from the tree's, by Kustomization (the last spec built)
    live_builds: dict[Key, tuple[tuple[Any, ...], Build]] = field(default_factory=dict)

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

    def build_live(
        self,
        snap: Snapshot,
        live: Mapping[str, Any],
        declared: FluxKustomization | None,
        inputs: Inputs | None = None,
    ) -> Build:
        """What kustomize-controller builds for the live Kustomization `live` (as the API
        holds it after a `kubectl patch` or `edit`): its spec's path, targetNamespace,
        components, patches, commonMetadata, namePrefix/nameSuffix and images. When those
        are what the tree declares (`declared`), the tree's own build is taken (cached per
        commit); otherwise the spec is built on its own, cached per commit and spec."""
        spec = strip_markers(live.get("spec") or {})
        wanted = build_fields(spec)
        same = declared is not None and wanted == declared_fields(declared)
        if same and declared is not None and not set(wanted) & _POST_RENDER:
            return self.build(snap, declared, inputs)
        inputs = inputs or Inputs()
        md = live.get("metadata") or {}
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        mark = (json.dumps(wanted, sort_keys=True, default=str), *inputs.fingerprint())
        hit = snap.live_builds.get(key)
        if hit is None or hit[0] != mark:
            hit = (mark, self._build_spec(snap, live, inputs))
            snap.live_builds[key] = hit
        return hit[1]

    def _build_spec(self, snap: Snapshot, live: Mapping[str, Any], inputs: Inputs) -> Build:
        spec = live.get("spec") or {}
        path = str(spec.get("path") or "")
        if not self.has_dir(snap.sha, path):
            return path_not_found(path)
        try:
            ks = snap.tree.kustomization_from(live)
            if spec.get("ignoreMissingComponents"):
                present = tuple(c for c in ks.components if snap.tree.source.is_dir(c))
                ks = dataclasses.replace(ks, components=present)
            docs = snap.tree.render_spec(ks)
        except TreeError as exc:
            return Build(reason=BUILD_FAILED, message=exc.reason)
        rename_and_retag([d.obj for d in docs], spec)
        return self._finish_build(snap, ks, [(d, d.obj) for d in docs], inputs)

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
        return self._finish_build(snap, ks, pairs, inputs)

    def _finish_build(
        self,
        snap: Snapshot,
        ks: FluxKustomization,
        pairs: list[tuple[Doc, dict[str, Any]]],
        inputs: Inputs,
    ) -> Build:
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
                    try:  # over the resource's whole YAML text, as fluxcd/pkg does
                        check_names(inputs.variables)
                        obj = substitute_resource(obj, inputs.variables, strict=inputs.strict)
                    except (EnvsubstError, SubstitutionError) as exc:
                        return Build(reason=BUILD_FAILED, message=post_build_error(obj, exc))
            objects.append(strip_markers(obj))
        return Build(objects)


# the spec fields kustomize-controller's generator writes into the build (the rest of the
# spec is read by the reconcile itself: prune, wait, healthChecks, timeout, dependsOn ...)
BUILD_FIELDS = (
    "path",
    "targetNamespace",
    "components",
    "ignoreMissingComponents",
    "patches",
    "commonMetadata",
    "namePrefix",
    "nameSuffix",
    "images",
    "sourceRef",
)
_POST_RENDER = {"namePrefix", "nameSuffix", "images"}  # the tree's own build skips these


def build_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The build-relevant part of a Kustomization spec, `path` normalised."""
    out = {k: spec[k] for k in BUILD_FIELDS if spec.get(k) not in (None, "", [], {})}
    if "path" in out:
        out["path"] = str(out["path"]).strip().removeprefix("./").strip("/")
    if "sourceRef" in out and isinstance(out["sourceRef"], Mapping):
        out["sourceRef"] = {k: v for k, v in out["sourceRef"].items() if k != "namespace"}
    return out


def declared_fields(ks: FluxKustomization) -> dict[str, Any]:
    """build_fields of a Kustomization the tree declares (the operator's root has no
    spec in Git: what the lab's FluxInstance gives it)."""
    if ks.generated:
        source = {"kind": "GitRepository", "name": ks.source_ref[1]}
        return {"path": ks.path, "sourceRef": source}
    return build_fields(strip_markers(ks.spec))


# kustomize's prefix/suffix transformer leaves these kinds' names alone
_KEEP_NAME = {"CustomResourceDefinition", "APIService", "Namespace"}


def rename_and_retag(objects: list[dict[str, Any]], spec: Mapping[str, Any]) -> None:
    """spec.namePrefix/nameSuffix and spec.images, as kustomize applies them to the
    built objects (in place). Names are changed on the objects themselves; references
    to renamed ConfigMaps and Secrets are not rewritten (the lab's kustomize does not
    track them for prefixes)."""
    prefix, suffix = str(spec.get("namePrefix") or ""), str(spec.get("nameSuffix") or "")
    if prefix or suffix:
        for obj in objects:
            meta = obj.get("metadata")
            if obj.get("kind") in _KEEP_NAME or not isinstance(meta, dict) or not meta.get("name"):
                continue
            meta["name"] = f"{prefix}{meta['name']}{suffix}"
    images = [i for i in spec.get("images") or [] if isinstance(i, Mapping) and i.get("name")]
    if images:
        for obj in objects:
            _retag(obj, images)


def _split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference."""
    rest, _, digest_part = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1 :], digest_part
    return rest, "", digest_part


def _retag(node: Any, images: list[Mapping[str, Any]]) -> None:
    """kustomize's image transformer on every containers/initContainers list."""
    if isinstance(node, list):
        for item in node:
            _retag(item, images)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in ("containers", "initContainers") and isinstance(value, list):
            for container in value:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    container["image"] = _new_image(container["image"], images)
        _retag(value, images)


def _new_image(image: str, images: list[Mapping[str, Any]]) -> str:
    name, tag, digest_part = _split_image(image)
    for entry in images:
        if str(entry["name"]) != name:
            continue
        name = str(entry.get("newName") or name)
        if entry.get("digest"):
            return f"{name}@{entry['digest']}"
        if entry.get("newTag"):
            return f"{name}:{entry['newTag']}"
        return name + (f":{tag}" if tag else "") + (f"@{digest_part}" if digest_part else "")
    return image


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
