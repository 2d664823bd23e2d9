"""The parsed `kubernetes/` Flux tree: the one parser the console, runbooks and lab share.

It follows the tree the way Flux does. A root Kustomization `flux-system` (made by the
flux-operator in the real cluster, synthesised here) applies `kubernetes/flux/cluster`;
every Flux Kustomization found in what a Kustomization builds becomes a child, built in
turn with its own `targetNamespace`, `components`, `patches` (the cluster-apps patch that
injects decryption and `substituteFrom` into every child lands here) and `postBuild`
substitution. Nothing is decrypted: SOPS files stay encrypted, cluster-secrets' keys are
read from the file and their `${VAR}`s are left as they are unless the caller (the lab)
passes `secret_values`.

Usage:
    tree = FluxTree.load("/path/to/checkout")          # or a FileSource
    tree = FluxTree.load(GitTreeSource(repo, "main"))  # the lab: a commit, not a checkout
    for ks in tree.dependency_order(): objs = tree.build(ks)
"""

from __future__ import annotations

import base64
import logging
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapper.backends.gitops.kustomize_build import Overlay, Patch, Renderer, describe
from dapper.backends.gitops.postbuild import (
    EnvsubstError,
    check_names,
    is_disabled,
    post_build_error,
    substitute,
)
from dapper.backends.gitops.treesource import FileSource, SourceError, as_source, norm, walk
from dapper.backends.gitops.yamldocs import (
    SHARED_PARSES,
    Doc,
    DocCache,
    ParseCache,
    Plain,
    TreeError,
    parse_text,
    resolve_plain,
    strip_markers,
)

log = logging.getLogger(__name__)

FLUX_KS_API = "kustomize.toolkit.fluxcd.io"
HELM_API = "helm.toolkit.fluxcd.io"
SOURCE_API = "source.toolkit.fluxcd.io"
CHART_SOURCE_KINDS = ("HelmRepository", "OCIRepository", "GitRepository", "Bucket")
ROOT_PATH = "kubernetes/flux/cluster"
TREE_DIR = "kubernetes"

Key = tuple[str, str]  # (namespace, name)
SecretValues = Callable[[str, str], Mapping[str, str] | None]


class PostBuildError(TreeError):
    """kustomize built the Kustomization; its postBuild substitution (with the values
    the tree holds) failed. Keeps what kustomize built."""

    def __init__(self, cause: TreeError, built: _Built) -> None:
        super().__init__(cause.file, cause.line, cause.reason)
        self.built = built


class DependencyCycle(Exception):
    def __init__(self, cycle: list[Key]) -> None:
        super().__init__("dependsOn cycle: " + " -> ".join(f"{n}/{k}" for n, k in cycle))
        self.cycle = cycle


@dataclass(frozen=True, eq=False)
class FluxKustomization:
    """One Flux Kustomization as Flux would see it (after the parent's transforms)."""

    name: str
    namespace: str
    path: str  # repo path, normalised ("kubernetes/apps/media/plex/app")
    depends_on: tuple[Key, ...] = ()
    source_ref: tuple[str, str, str] = ("GitRepository", "flux-system", "flux-system")
    interval: str = ""
    retry_interval: str = ""
    timeout: str = ""
    prune: bool = False
    wait: bool = False
    suspend: bool = False
    target_namespace: str | None = None
    substitute: dict[str, str] = field(default_factory=dict)
    substitute_from: tuple[tuple[str, str, bool], ...] = ()  # (kind, name, optional)
    components: tuple[str, ...] = ()  # repo paths
    labels: dict[str, str] = field(default_factory=dict)
    decryption: tuple[str, str] | None = None  # (provider, secretRef name)
    health_checks: tuple[dict[str, Any], ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    file: str = ""  # where it is defined ("" for the synthesised root)
    line: int = 0
    parent: Key | None = None
    generated: bool = False  # the root flux-system Kustomization made by the operator

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @property
    def has_post_build(self) -> bool:
        return bool(self.substitute or self.substitute_from)


@dataclass(frozen=True, eq=False)
class HelmReleaseInfo:
    name: str
    namespace: str
    chart: str  # chart name, or "" with chart_ref
    version: str  # as written ("" when absent)
    source_kind: str
    source_name: str
    source_namespace: str
    chart_ref: tuple[str, str, str] | None  # (kind, name, namespace) for spec.chartRef
    values: dict[str, Any]
    values_from: tuple[dict[str, Any], ...]
    depends_on: tuple[Key, ...]
    owner: Key
    file: str
    line: int


@dataclass(frozen=True, eq=False)
class ChartSource:
    kind: str  # HelmRepository, OCIRepository, GitRepository, Bucket
    name: str
    namespace: str
    url: str
    type: str  # HelmRepository spec.type ("default" or "oci"); "" otherwise
    ref: dict[str, Any]  # OCIRepository/GitRepository spec.ref
    owner: Key
    file: str
    line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class SopsFile:
    path: str
    owner: Key | None


@dataclass
class _Built:
    docs: list[Doc]
    files: set[str]
    undefined: list[tuple[str, Doc]]
    raw: list[dict[str, Any]] | None = None  # docs' objects before substitution (if any)


def _s(v: Any, default: str = "") -> str:
    return default if v is None else str(v)


def _repo_path(path: str) -> str:
    try:
        return norm(path)
    except SourceError:
        return path


class FluxTree:
    """Every Flux Kustomization, HelmRelease, chart source and SOPS file of a tree."""

    def __init__(
        self,
        source: FileSource,
        root_path: str,
        secret_values: SecretValues | None,
        parses: ParseCache | None = SHARED_PARSES,
    ):
        self.source = source
        self.root_path = root_path
        self.cache = DocCache(source, parses)
        self.renderer = Renderer(self.cache)
        self._secret_values = secret_values
        self.kustomizations: list[FluxKustomization] = []
        self.helm_releases: list[HelmReleaseInfo] = []
        self.chart_sources: list[ChartSource] = []
        self.sops_files: list[SopsFile] = []
        self.settings: dict[str, str] = {}
        self.secret_keys: set[str] = set()
        self.errors: dict[Key, TreeError] = {}  # Kustomizations that do not build
        self.duplicates: list[tuple[FluxKustomization, FluxKustomization]] = []
        self._built: dict[Key, _Built] = {}
        self._by_key: dict[Key, FluxKustomization] = {}
        self._index: dict[tuple[str, str, str], Doc] = {}  # (kind, ns, name) -> rendered
        self._scan: dict[tuple[str, str], list[Doc]] | None = None

    # ------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        source_or_path: FileSource | str | Path,
        root_path: str = ROOT_PATH,
        secret_values: SecretValues | None = None,
        *,
        parses: ParseCache | None = SHARED_PARSES,
    ) -> FluxTree:
        """Parse and build the whole tree. Broken Kustomizations land in `errors`.
        Files whose content was parsed before (another commit, an earlier load) are
        taken from `parses` instead of being parsed again."""
        tree = cls(as_source(source_or_path), norm(root_path), secret_values, parses)
        tree._load()
        return tree

    def _load(self) -> None:
        root = FluxKustomization(
            name="flux-system",
            namespace="flux-system",
            path=self.root_path,
            interval="10m",
            prune=True,
            decryption=("sops", "sops-age"),
            generated=True,
        )
        queue = [root]
        while queue:
            ks = queue.pop(0)
            if ks.key in self._by_key:
                self.duplicates.append((self._by_key[ks.key], ks))
                continue
            self._by_key[ks.key] = ks
            self.kustomizations.append(ks)
            try:
                built = self._build(ks)
            except TreeError as exc:
                self.errors[ks.key] = exc
                if isinstance(exc, PostBuildError):  # kustomize built it; substitution failed
                    self._built[ks.key] = exc.built
                continue
            self._built[ks.key] = built
            for d in built.docs:
                if d.obj.get("kind") == "Kustomization" and _api_group(d) == FLUX_KS_API:
                    try:
                        queue.append(self._flux_ks(d, ks))
                    except TreeError as exc:
                        self.errors[(ks.namespace, f"<child of {ks.name}>")] = exc
        self._collect()

    def _overlay(self, ks: FluxKustomization) -> Overlay:
        patches = []
        for p in ks.spec.get("patches") or []:
            if not isinstance(p, dict) or not p.get("patch"):
                raise TreeError(ks.file, ks.line, "spec.patches entries need a 'patch'")
            for body, _l in parse_text(str(p["patch"]), ks.file):
                if body is not None:
                    patches.append(Patch(body, p.get("target"), ks.file, ks.line))
        cm = ks.spec.get("commonMetadata") or {}
        return Overlay(
            namespace=ks.target_namespace,
            components=list(ks.components),
            patches=patches,
            labels={str(k): str(v) for k, v in (cm.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (cm.get("annotations") or {}).items()},
        )

    def _build(self, ks: FluxKustomization) -> _Built:
        kind, name, _ns = ks.source_ref
        if (kind, name) != ("GitRepository", "flux-system"):
            raise TreeError(ks.file, ks.line, f"source {kind}/{name} is not this repository")
        if not self.source.is_dir(ks.path):
            raise TreeError(ks.file, ks.line, f"spec.path ./{ks.path} does not exist")
        docs = self.renderer.build(ks.path, self._overlay(ks))
        files = set(self.renderer.files_read)
        for d in docs:
            self._index.setdefault(_doc_key(d), d)
        undefined: list[tuple[str, Doc]] = []
        raw = None
        if ks.has_post_build:
            raw = [d.obj for d in docs]  # substitution copies, so these stay as built

            def failed(exc: TreeError) -> PostBuildError:
                for d, obj in zip(docs, raw, strict=True):
                    d.obj = obj
                return PostBuildError(exc, _Built(docs, files, [], raw))

            try:
                values, kept = self._values(ks)
            except TreeError as exc:
                raise failed(exc) from exc

            def keep(n: str) -> bool:
                return n in kept and n not in values

            for d in docs:
                if is_disabled(d.obj) or not (values or kept):
                    continue  # Flux substitutes only when there is at least one variable
                missing: set[str] = set()
                try:
                    check_names(values)
                    d.obj = substitute_tree(d.obj, values, keep, missing)
                except EnvsubstError as exc:
                    error = TreeError(d.file, d.line, post_build_error(d.obj, exc))
                    raise failed(error) from exc
                undefined.extend((n, d) for n in sorted(missing))
        return _Built(docs, files, undefined, raw)

    def _values(self, ks: FluxKustomization) -> tuple[dict[str, str], set[str]]:
        """The variables of `ks` as Git has them, and the names whose (encrypted) values
        are unknown."""
        values: dict[str, str] = {}
        kept: set[str] = set()
        for kind, name, optional in ks.substitute_from:
            doc = self._lookup(kind, ks.namespace, name)
            if doc is None:
                if optional:
                    continue
                raise TreeError(
                    ks.file, ks.line, f"postBuild.substituteFrom {kind}/{name} not found"
                )
            data = {str(k): _s(v) for k, v in (doc.obj.get("data") or {}).items()}
            if kind == "Secret":
                string_data = {str(k): _s(v) for k, v in (doc.obj.get("stringData") or {}).items()}
                if "sops" in doc.obj:
                    given = self._secret_values(ks.namespace, name) if self._secret_values else None
                    if given is not None:
                        values.update({str(k): str(v) for k, v in given.items()})
                    else:
                        kept |= set(data) | set(string_data)
                    continue
                for k, v in data.items():
                    try:
                        data[k] = base64.b64decode(v).decode()
                    except ValueError:
                        data[k] = v
                data.update(string_data)
            values.update(data)
        values.update(ks.substitute)
        values = {k: v.replace("\n", "") for k, v in values.items()}  # as Flux loads them
        return values, kept

    def _lookup(self, kind: str, namespace: str, name: str) -> Doc | None:
        """A ConfigMap/Secret as the cluster would have it: rendered, else in any file."""
        hit = self._index.get((kind, namespace, name))
        if hit is not None:
            return hit
        if self._scan is None:
            self._scan = {}
            for path in self._tree_files():
                try:
                    for d in self.cache.docs(path):
                        if d.obj.get("kind") in ("ConfigMap", "Secret"):
                            mname = str((d.obj.get("metadata") or {}).get("name", ""))
                            self._scan.setdefault((str(d.obj["kind"]), mname), []).append(d)
                except TreeError:
                    continue
        found = self._scan.get((kind, name)) or []
        return found[0] if found else None

    def _tree_files(self) -> Iterator[str]:
        top = TREE_DIR if self.source.is_dir(TREE_DIR) else ""
        for path in walk(self.source, top):
            if path.endswith((".yaml", ".yml")):
                yield path

    def _flux_ks(self, d: Doc, parent: FluxKustomization) -> FluxKustomization:
        obj = strip_markers(d.obj)
        md = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        name = _s(md.get("name"))
        ns = _s(md.get("namespace")) or parent.target_namespace or parent.namespace
        if not spec.get("path") and spec.get("path") != "":
            raise TreeError(d.file, d.line, f"Kustomization {name} has no spec.path")
        src = spec.get("sourceRef") or {}
        post = spec.get("postBuild") or {}
        dec = spec.get("decryption")
        comps = []
        path = _repo_path(_s(spec.get("path")))
        for c in spec.get("components") or []:
            comps.append(_repo_path(posixpath.join(path, str(c))))
        return FluxKustomization(
            name=name,
            namespace=ns,
            path=path,
            depends_on=tuple(
                (_s(dep.get("namespace")) or ns, _s(dep.get("name")))
                for dep in spec.get("dependsOn") or []
                if isinstance(dep, dict)
            ),
            source_ref=(
                _s(src.get("kind"), "GitRepository"),
                _s(src.get("name")),
                _s(src.get("namespace")) or ns,
            ),
            interval=_s(spec.get("interval")),
            retry_interval=_s(spec.get("retryInterval")),
            timeout=_s(spec.get("timeout")),
            prune=bool(spec.get("prune", False)),
            wait=bool(spec.get("wait", False)),
            suspend=bool(spec.get("suspend", False)),
            target_namespace=_s(spec.get("targetNamespace")) or None,
            substitute={str(k): _s(v) for k, v in (post.get("substitute") or {}).items()},
            substitute_from=tuple(
                (_s(s.get("kind")), _s(s.get("name")), bool(s.get("optional", False)))
                for s in post.get("substituteFrom") or []
                if isinstance(s, dict)
            ),
            components=tuple(comps),
            labels={str(k): _s(v) for k, v in (md.get("labels") or {}).items()},
            decryption=(
                (_s(dec.get("provider")), _s((dec.get("secretRef") or {}).get("name")))
                if isinstance(dec, dict)
                else None
            ),
            health_checks=tuple(spec.get("healthChecks") or ()),
            spec=spec,
            file=d.file,
            line=d.line,
            parent=parent.key,
        )

    def _collect(self) -> None:
        for ks in self.kustomizations:
            built = self._built.get(ks.key)
            if built is None:
                continue
            for d in built.docs:
                kind, group = d.obj.get("kind"), _api_group(d)
                if kind == "HelmRelease" and group == HELM_API:
                    self.helm_releases.append(_helm_release(d, ks))
                elif kind in CHART_SOURCE_KINDS and group == SOURCE_API:
                    self.chart_sources.append(_chart_source(d, ks))
        for ks in self.kustomizations:
            for kind, name, _opt in ks.substitute_from:
                doc = self._lookup(kind, ks.namespace, name)
                if doc is None:
                    continue
                if kind == "ConfigMap":
                    for k, v in (doc.obj.get("data") or {}).items():
                        self.settings.setdefault(str(k), _s(v))
                else:
                    self.secret_keys |= {str(k) for k in doc.obj.get("data") or {}}
                    self.secret_keys |= {str(k) for k in doc.obj.get("stringData") or {}}
        for path in self._tree_files():
            if path.endswith((".sops.yaml", ".sops.yml")):
                owner = self.owner_of(path)
                self.sops_files.append(SopsFile(path, owner.key if owner else None))

    # ------------------------------------------------------------ queries

    def get(self, namespace: str, name: str) -> FluxKustomization | None:
        return self._by_key.get((namespace, name))

    def render(self, ks: FluxKustomization) -> list[Doc]:
        """Objects a Kustomization applies, with origins; raises TreeError if it fails."""
        if ks.key in self.errors:
            raise self.errors[ks.key]
        return self._built[ks.key].docs

    def render_unsubstituted(self, ks: FluxKustomization) -> list[tuple[Doc, dict[str, Any]]]:
        """(doc, its object as kustomize built it, before postBuild substitution): for a
        caller (the lab's Flux) that substitutes with values from elsewhere, so a
        substitution that failed with the tree's own values does not count. The objects
        are shared: copy before changing them."""
        built = self._built.get(ks.key)
        if built is None:
            raise self.errors[ks.key]
        docs, raw = built.docs, built.raw
        return list(zip(docs, raw if raw is not None else [d.obj for d in docs], strict=True))

    def kustomization_from(self, obj: Mapping[str, Any]) -> FluxKustomization:
        """A Flux Kustomization object (as a cluster holds it) read the way the tree reads
        the ones it finds; raises TreeError like them."""
        md = obj.get("metadata") or {}
        ns = _s(md.get("namespace")) or "default"
        outside = FluxKustomization(name="", namespace=ns, path="", generated=True)
        return self._flux_ks(Doc(dict(obj), "", 0), outside)

    def render_spec(self, ks: FluxKustomization) -> list[Doc]:
        """Render `ks` as its spec says, before postBuild and not cached: for a caller (the
        lab's Flux) building a spec that differs from the tree's. Raises TreeError."""
        return self.renderer.build(ks.path, self._overlay(ks))

    def build(self, ks: FluxKustomization) -> list[dict[str, Any]]:
        """Objects a Kustomization applies (kustomize build + Flux postBuild), plain dicts."""
        return [strip_markers(d.obj) for d in self.render(ks)]

    def undefined_variables(self, ks: FluxKustomization) -> list[tuple[str, Doc]]:
        """(variable, object) for every `${VAR}` substitution left with no value."""
        built = self._built.get(ks.key)
        return list(built.undefined) if built else []

    def files_of(self, ks: FluxKustomization) -> list[str]:
        built = self._built.get(ks.key)
        return sorted(built.files) if built else []

    def owners_of(self, repo_path: str) -> list[FluxKustomization]:
        p = _repo_path(repo_path)
        return [ks for ks in self.kustomizations if p in self._built.get(ks.key, _EMPTY).files]

    def owner_of(self, repo_path: str) -> FluxKustomization | None:
        """The Kustomization that applies a file; of several, the one whose path is the
        closest parent directory of the file (else the first in dependency order)."""
        owners = self.owners_of(repo_path)
        if not owners:
            return None
        p = _repo_path(repo_path)
        inside = [ks for ks in owners if p.startswith(ks.path.rstrip("/") + "/")]
        if inside:
            return max(inside, key=lambda ks: len(ks.path))
        return owners[0]

    def cycles(self) -> list[list[Key]]:
        """Every elementary dependsOn cycle found by DFS (each reported once)."""
        graph = {
            ks.key: [d for d in ks.depends_on if d in self._by_key] for ks in self.kustomizations
        }
        seen_cycles: set[frozenset[Key]] = set()
        out: list[list[Key]] = []
        state: dict[Key, int] = {}
        stack: list[Key] = []

        def dfs(k: Key) -> None:
            state[k] = 1
            stack.append(k)
            for dep in graph.get(k, []):
                if state.get(dep) == 1:
                    cyc = [*stack[stack.index(dep) :], dep]
                    sig = frozenset(cyc)
                    if sig not in seen_cycles:
                        seen_cycles.add(sig)
                        out.append(cyc)
                elif dep not in state:
                    dfs(dep)
            stack.pop()
            state[k] = 2

        for ks in self.kustomizations:
            if ks.key not in state:
                dfs(ks.key)
        return out

    def dependency_order(self) -> list[FluxKustomization]:
        """Parents before children, dependencies before dependents; DependencyCycle if none."""
        deps: dict[Key, set[Key]] = {}
        for ks in self.kustomizations:
            d = {k for k in ks.depends_on if k in self._by_key}
            if ks.parent is not None:
                d.add(ks.parent)
            deps[ks.key] = d
        done: set[Key] = set()
        order: list[FluxKustomization] = []
        pending = list(self.kustomizations)
        while pending:
            ready = [ks for ks in pending if deps[ks.key] <= done]
            if not ready:
                cycles = self.cycles()
                raise DependencyCycle(cycles[0] if cycles else [ks.key for ks in pending])
            for ks in ready:
                done.add(ks.key)
                order.append(ks)
            pending = [ks for ks in pending if ks.key not in done]
        return order

    def chart_source(self, kind: str, namespace: str, name: str) -> ChartSource | None:
        for src in self.chart_sources:
            if src.key == (kind, namespace, name):
                return src
        return None


_EMPTY = _Built([], set(), [])


def _api_group(d: Doc) -> str:
    api = str(d.obj.get("apiVersion", ""))
    return api.rsplit("/", 1)[0] if "/" in api else ""


def _doc_key(d: Doc) -> tuple[str, str, str]:
    m = d.obj.get("metadata") or {}
    return (str(d.obj.get("kind", "")), str(m.get("namespace") or ""), str(m.get("name") or ""))


def substitute_tree(
    node: Any,
    values: Mapping[str, str],
    keep: Callable[[str], bool] = lambda _n: False,
    missing: set[str] | None = None,
    *,
    strict: bool = False,
) -> Any:
    """envsubst over every key and string of an object (Flux substitutes the object's
    YAML text); an unquoted scalar is re-typed as Flux's re-parse would. Raises
    EnvsubstError; names left without a value are added to `missing`."""
    missing = set() if missing is None else missing
    if isinstance(node, dict):
        return {
            substitute_tree(k, values, keep, missing, strict=strict): substitute_tree(
                v, values, keep, missing, strict=strict
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [substitute_tree(v, values, keep, missing, strict=strict) for v in node]
    if isinstance(node, str) and "$" in node:
        res = substitute(node, values, keep, strict=strict)
        missing |= res.undefined
        if res.text == node:
            return node
        return resolve_plain(res.text) if isinstance(node, Plain) else res.text
    return node


def _helm_release(d: Doc, ks: FluxKustomization) -> HelmReleaseInfo:
    obj = strip_markers(d.obj)
    md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ns = _s(md.get("namespace")) or "default"
    chart_spec = ((spec.get("chart") or {}).get("spec")) or {}
    src = chart_spec.get("sourceRef") or {}
    ref = spec.get("chartRef")
    return HelmReleaseInfo(
        name=_s(md.get("name")),
        namespace=ns,
        chart=_s(chart_spec.get("chart")),
        version=_s(chart_spec.get("version")),
        source_kind=_s(src.get("kind")),
        source_name=_s(src.get("name")),
        source_namespace=_s(src.get("namespace")) or ns,
        chart_ref=(
            (_s(ref.get("kind")), _s(ref.get("name")), _s(ref.get("namespace")) or ns)
            if isinstance(ref, dict)
            else None
        ),
        values=spec.get("values") or {},
        values_from=tuple(spec.get("valuesFrom") or ()),
        depends_on=tuple(
            (_s(x.get("namespace")) or ns, _s(x.get("name")))
            for x in spec.get("dependsOn") or []
            if isinstance(x, dict)
        ),
        owner=ks.key,
        file=d.file,
        line=d.line,
    )


def _chart_source(d: Doc, ks: FluxKustomization) -> ChartSource:
    obj = strip_markers(d.obj)
    md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    return ChartSource(
        kind=_s(obj.get("kind")),
        name=_s(md.get("name")),
        namespace=_s(md.get("namespace")) or "default",
        url=_s(spec.get("url")),
        type=_s(spec.get("type")) if obj.get("kind") == "HelmRepository" else "",
        ref=spec.get("ref") or {},
        owner=ks.key,
        file=d.file,
        line=d.line,
    )


__all__ = [
    "ChartSource",
    "DependencyCycle",
    "FluxKustomization",
    "FluxTree",
    "HelmReleaseInfo",
    "SopsFile",
    "TreeError",
    "describe",
    "substitute_tree",
]
