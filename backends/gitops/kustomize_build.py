"""A kustomize renderer for the subset a Flux tree uses, without shelling out.

The lab and the console need to know which objects a Flux Kustomization creates; the
real `kustomize` binary is not always there and is slow to spawn a hundred times. This
covers: resources (files, directories), nested kustomization files, components (kind
Component), configMapGenerator/secretGenerator (files, literals, envs, hash suffix,
behavior), namespace, commonLabels/labels, commonAnnotations, patches (strategic merge
and JSON 6902, with targets), patchesStrategicMerge, patchesJson6902, and the name
references that follow a hashed generator name. Directories without a kustomization
file are expanded as Flux does (every YAML file, sub-directories with their own
kustomization file as a whole). Anything else is recorded in `warnings` and ignored.

`check` still runs the real kustomize for the authoritative build; tests compare the two.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dapper.backends.gitops.treesource import norm
from dapper.backends.gitops.yamldocs import Doc, DocCache, Plain, TreeError, clone, parse_text
from dapper.backends.patching import MERGE_KEYS, PatchError, json_patch, strategic_merge

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

# Builtin kinds kustomize knows to be cluster-scoped (it treats unknown kinds as namespaced).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
        "CustomResourceDefinition", "StorageClass", "PriorityClass", "IngressClass",
        "RuntimeClass", "CSIDriver", "CSINode", "VolumeAttachment", "APIService",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
        "CertificateSigningRequest", "ComponentStatus", "FlowSchema",
        "PriorityLevelConfiguration", "VolumeSnapshotClass", "VolumeSnapshotContent",
    }
)  # fmt: skip

HANDLED_FIELDS = frozenset(
    {
        "apiVersion", "kind", "metadata", "resources", "components", "namespace",
        "configMapGenerator", "secretGenerator", "generatorOptions", "patches",
        "patchesStrategicMerge", "patchesJson6902", "commonLabels", "labels",
        "commonAnnotations", "configurations", "sortOptions", "buildMetadata",
    }
)  # fmt: skip

POD_SPEC_ROOTS = {
    "Pod": "spec",
    "Deployment": "spec/template/spec",
    "StatefulSet": "spec/template/spec",
    "DaemonSet": "spec/template/spec",
    "ReplicaSet": "spec/template/spec",
    "Job": "spec/template/spec",
    "CronJob": "spec/jobTemplate/spec/template/spec",
}
TEMPLATE_ROOTS = {k: v.rsplit("/spec", 1)[0] for k, v in POD_SPEC_ROOTS.items() if k != "Pod"}
_CM_REFS = (
    "volumes/configMap/name",
    "volumes/projected/sources/configMap/name",
    "containers/env/valueFrom/configMapKeyRef/name",
    "initContainers/env/valueFrom/configMapKeyRef/name",
    "containers/envFrom/configMapRef/name",
    "initContainers/envFrom/configMapRef/name",
)
_SECRET_REFS = (
    "volumes/secret/secretName",
    "volumes/projected/sources/secret/name",
    "containers/env/valueFrom/secretKeyRef/name",
    "initContainers/env/valueFrom/secretKeyRef/name",
    "containers/envFrom/secretRef/name",
    "initContainers/envFrom/secretRef/name",
    "imagePullSecrets/name",
)


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def version_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[-1]


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def obj_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    m = obj.get("metadata") or {}
    return (
        group_of(str(obj.get("apiVersion", ""))),
        str(obj.get("kind", "")),
        str(m.get("namespace") or ""),
        str(m.get("name") or ""),
    )


def describe(obj: dict[str, Any]) -> str:
    _g, kind, ns, name = obj_id(obj)
    return f"{kind} {ns + '/' if ns else ''}{name}"


# ---------------------------------------------------------------- label selectors


def _split_selector(sel: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def selector_matches(selector: str, labels: dict[str, Any]) -> bool:
    """Kubernetes label-selector syntax (=, ==, !=, in, notin, exists, !exists)."""
    for req in _split_selector(selector or ""):
        m = _SET_RE.match(req)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and str(labels[key]) in vals
            if (op == "in" and not present) or (op == "notin" and present):
                return False
        elif "!=" in req:
            key, val = (s.strip() for s in req.split("!=", 1))
            if str(labels.get(key, "\0")) == val:
                return False
        elif "=" in req:
            key, val = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if key not in labels or str(labels[key]) != val:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


def target_matches(target: dict[str, Any], obj: dict[str, Any]) -> bool:
    """A kustomize patch target (fields are anchored regexes) against one object."""
    api = str(obj.get("apiVersion", ""))
    m = obj.get("metadata") or {}
    checks = {
        "group": group_of(api),
        "version": version_of(api),
        "kind": str(obj.get("kind", "")),
        "name": str(m.get("name", "")),
        "namespace": str(m.get("namespace") or ""),
    }
    for key, actual in checks.items():
        want = target.get(key)
        if want in (None, ""):
            continue
        try:
            if not re.fullmatch(str(want), actual):
                return False
        except re.error:
            if str(want) != actual:
                return False
    if target.get("labelSelector") and not selector_matches(
        str(target["labelSelector"]), m.get("labels") or {}
    ):
        return False
    return not (
        target.get("annotationSelector")
        and not selector_matches(str(target["annotationSelector"]), m.get("annotations") or {})
    )


# ---------------------------------------------------------------- patches


def is_builtin(obj: dict[str, Any]) -> bool:
    g = group_of(str(obj.get("apiVersion", "")))
    return g == "" or "." not in g or g.endswith(".k8s.io")


@dataclass
class Patch:
    """One patch (strategic-merge document or JSON 6902 op list) with an optional target."""

    body: Any
    target: dict[str, Any] | None
    file: str
    line: int

    def apply(self, docs: list[Doc]) -> None:
        if isinstance(self.body, list):
            if not self.target:
                raise TreeError(self.file, self.line, "a JSON 6902 patch needs a target")
            for d in docs:
                if target_matches(self.target, d.obj):
                    try:
                        d.obj = json_patch(d.obj, self.body)
                    except PatchError as exc:
                        raise TreeError(self.file, self.line, f"{describe(d.obj)}: {exc}") from None
            return
        if not isinstance(self.body, dict):
            raise TreeError(self.file, self.line, "a patch must be a mapping or an op list")
        target = self.target
        if not target:
            pm = self.body.get("metadata") or {}
            target = {
                "kind": re.escape(str(self.body.get("kind", ""))),
                "name": re.escape(str(pm.get("name", ""))),
            }
            if pm.get("namespace"):
                target["namespace"] = re.escape(str(pm["namespace"]))
            if not self.body.get("kind") or not pm.get("name"):
                raise TreeError(
                    self.file, self.line, "a patch without target needs kind and metadata.name"
                )
            hits = [d for d in docs if target_matches(target, d.obj)]
            if not hits:
                raise TreeError(
                    self.file, self.line, f"patch target {describe(self.body)} not found"
                )
        body = self.body
        deleted: list[Doc] = []
        for d in docs:
            if target_matches(target, d.obj):
                patch = body
                if self.target:  # the patch's own name/kind do not rename targets
                    patch = dict(body)
                    pm = dict(patch.get("metadata") or {})
                    pm.pop("name", None)
                    pm.pop("namespace", None)
                    patch["metadata"] = pm
                    patch.pop("kind", None)
                    patch.pop("apiVersion", None)
                keys = MERGE_KEYS if is_builtin(d.obj) else {}
                merged = strategic_merge(d.obj, patch, keys)
                if merged is None:  # `$patch: delete`: the resource leaves the build
                    deleted.append(d)
                else:
                    d.obj = merged
        docs[:] = [d for d in docs if not any(d is gone for gone in deleted)]


# ---------------------------------------------------------------- generators


def _go_json(value: Any) -> str:
    """encoding/json.Marshal of maps of strings: sorted keys, no spaces, HTML escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(a, b)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def content_hash(obj: dict[str, Any]) -> str:
    """kustomize's name-suffix hash of a ConfigMap or Secret."""
    kind = obj.get("kind")
    # kustomize's hasher looks the name up by a path its lookup does not resolve, so the
    # name it hashes is always "" (checked against kubectl kustomize in the tests).
    name = ""
    if kind == "ConfigMap":
        enc: dict[str, Any] = {"kind": "ConfigMap", "name": name, "data": obj.get("data") or {}}
        if obj.get("binaryData"):
            enc["binaryData"] = obj["binaryData"]
        if "immutable" in obj:
            enc["immutable"] = obj["immutable"]
    else:
        enc = {
            "kind": "Secret",
            "type": obj.get("type", "Opaque"),
            "name": name,
            "data": obj.get("data") or {},
        }
        if "immutable" in obj:
            enc["immutable"] = obj["immutable"]
    digest = hashlib.sha256(_go_json(enc).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


# ---------------------------------------------------------------- the renderer


@dataclass
class Overlay:
    """What a Flux Kustomization adds on top of its path (as kustomize-controller does)."""

    namespace: str | None = None  # spec.targetNamespace
    components: list[str] = field(default_factory=list)  # repo paths
    patches: list[Patch] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # spec.commonMetadata
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class NameRef:
    kind: str  # ConfigMap or Secret
    ref_kind: str | None  # kind of the referring object, None for any
    path: str


class Renderer:
    """Builds directories of one source; parse results are shared between builds."""

    def __init__(self, cache: DocCache) -> None:
        self.cache = cache
        self.source = cache.source
        self.warnings: list[TreeError] = []
        self.files_read: set[str] = set()

    # -- public

    def build(self, path: str, overlay: Overlay | None = None) -> list[Doc]:
        """Render a directory (repo path) like `kustomize build` plus a Flux overlay."""
        path = norm(path)
        self.files_read = set()
        if not self.source.is_dir(path):
            raise TreeError(path, 0, "path does not exist")
        namerefs: list[NameRef] = []
        docs = self._build_dir(path, overlay or Overlay(), [], namerefs, top=True)
        self._finalize_names(docs, namerefs)
        return docs

    def kustomization_file(self, path: str) -> str | None:
        for name in KUSTOMIZATION_FILES:
            candidate = posixpath.join(path, name) if path else name
            if self.source.is_file(candidate):
                return candidate
        return None

    # -- directories

    def flux_generated(self, path: str) -> dict[str, Any]:
        """The kustomization Flux generates for a directory that has none."""
        resources: list[str] = []

        def scan(d: str) -> None:
            for name in self.source.listdir(d):
                sub = posixpath.join(d, name)
                if self.source.is_dir(sub):
                    if self.kustomization_file(sub):
                        resources.append(posixpath.relpath(sub, path))
                    else:
                        scan(sub)
                elif name.endswith((".yaml", ".yml")) and not name.startswith("."):
                    resources.append(posixpath.relpath(sub, path))

        scan(path)
        return {"resources": resources}

    def _build_dir(
        self,
        path: str,
        overlay: Overlay | None,
        stack: list[str],
        namerefs: list[NameRef],
        top: bool = False,
        component_base: list[Doc] | None = None,
    ) -> list[Doc]:
        if path in stack:
            raise TreeError(path, 0, "kustomization includes itself: " + " -> ".join(stack))
        kfile = self.kustomization_file(path)
        if kfile is None:
            if not top:
                raise TreeError(path, 0, "directory has no kustomization.yaml")
            kdoc: dict[str, Any] = self.flux_generated(path)
            kfile_label, kline = path, 0
        else:
            self.files_read.add(kfile)
            parsed = [d for d in self.cache.parsed(kfile) if d[0] is not None]
            if len(parsed) != 1 or not isinstance(parsed[0][0], dict):
                raise TreeError(kfile, 1, "a kustomization file must hold one mapping")
            kdoc, kline = parsed[0]
            kfile_label = kfile
            kind = kdoc.get("kind", "Kustomization")
            if component_base is None and kind == "Component":
                raise TreeError(kfile, kline, "a Component can only be listed under components")
            if component_base is not None and kind != "Component":
                raise TreeError(kfile, kline, f"listed as a component but kind is {kind}")
            for key in kdoc:
                if key not in HANDLED_FIELDS:
                    self.warnings.append(
                        TreeError(kfile, kline, f"kustomize field {key!r} is not rendered")
                    )
        stack = [*stack, path]
        docs: list[Doc] = list(component_base) if component_base is not None else []
        for entry in _strings(kdoc.get("resources"), kfile_label, kline, "resources"):
            self._add(docs, self._resource(path, entry, stack, namerefs, kfile_label, kline))
        components = list(_strings(kdoc.get("components"), kfile_label, kline, "components"))
        comp_paths = [self._resolve(path, c, kfile_label, kline) for c in components]
        if overlay is not None:
            comp_paths += overlay.components
        for cpath in comp_paths:
            if not self.source.is_dir(cpath):
                raise TreeError(kfile_label, kline, f"component {cpath} does not exist")
            docs = self._build_dir(cpath, None, stack, namerefs, component_base=docs)
        for ref in kdoc.get("configurations") or []:
            namerefs.extend(self._configurations(self._resolve(path, str(ref), kfile_label, kline)))
        self._generate(path, kdoc, docs, kfile_label, kline)
        self._transform(path, kdoc, docs, kfile_label, kline, overlay)
        return docs

    def _resolve(self, base: str, ref: str, file: str, line: int) -> str:
        try:
            return norm(posixpath.join(base, ref))
        except Exception as exc:
            raise TreeError(file, line, str(exc)) from None

    def _resource(
        self, base: str, entry: str, stack: list[str], namerefs: list[NameRef], kf: str, kl: int
    ) -> list[Doc]:
        if "://" in entry or entry.startswith(("github.com/", "git@")):
            raise TreeError(kf, kl, f"remote resource {entry} is not supported")
        path = self._resolve(base, entry, kf, kl)
        if self.source.is_dir(path):
            return self._build_dir(path, None, stack, namerefs)
        if not self.source.is_file(path):
            raise TreeError(kf, _line_of(self.cache, kf, entry, kl), f"resource {entry} not found")
        self.files_read.add(path)
        docs = self.cache.docs(path)
        for d in docs:
            if d.obj.get("kind") in ("Kustomization", "Component") and str(
                d.obj.get("apiVersion", "")
            ).startswith("kustomize.config.k8s.io"):
                raise TreeError(path, d.line, "a kustomization file listed as a resource")
            md = d.obj.get("metadata") or {}
            if not d.obj.get("kind") or not (md.get("name") or md.get("generateName")):
                raise TreeError(path, d.line, "object without kind or metadata.name")
        return docs

    def _add(self, docs: list[Doc], new: Iterable[Doc]) -> None:
        seen = {obj_id(d.obj): d for d in docs}
        for d in new:
            oid = obj_id(d.obj)
            if oid in seen:
                first = seen[oid]
                raise TreeError(
                    d.file,
                    d.line,
                    f"{describe(d.obj)} is defined twice (also {first.file}:{first.line})",
                )
            seen[oid] = d
            docs.append(d)

    # -- generators

    def _generate(self, path: str, kdoc: dict[str, Any], docs: list[Doc], kf: str, kl: int) -> None:
        opts = kdoc.get("generatorOptions") or {}
        for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
            for gen in kdoc.get(key) or []:
                if not isinstance(gen, dict) or not gen.get("name"):
                    raise TreeError(kf, kl, f"{key} entry without a name")
                obj, needs_hash = self._generated(path, kind, gen, opts, kf, kl)
                behavior = str(gen.get("behavior") or "create")
                oid = obj_id(obj)
                existing = next((d for d in docs if obj_id(d.obj) == oid), None)
                if behavior == "create":
                    if existing is not None:
                        raise TreeError(kf, kl, f"{describe(obj)} generated twice")
                    docs.append(Doc(obj, kf, kl, needs_hash=needs_hash))
                    continue
                if existing is None:
                    raise TreeError(kf, kl, f"{key} {behavior}: no {describe(obj)} to {behavior}")
                if behavior == "merge":
                    for field_ in ("data", "binaryData"):
                        if obj.get(field_):
                            existing.obj.setdefault(field_, {}).update(obj[field_])
                    em = meta(existing.obj)
                    for lk in ("labels", "annotations"):
                        if obj["metadata"].get(lk):
                            em.setdefault(lk, {}).update(obj["metadata"][lk])
                elif behavior == "replace":
                    existing.obj = obj
                else:
                    raise TreeError(kf, kl, f"unknown generator behavior {behavior!r}")
                existing.needs_hash = existing.needs_hash or needs_hash

    def _generated(
        self, path: str, kind: str, gen: dict[str, Any], opts: dict[str, Any], kf: str, kl: int
    ) -> tuple[dict[str, Any], bool]:
        data: dict[str, str] = {}
        binary: dict[str, str] = {}
        for lit in gen.get("literals") or []:
            k, sep, v = str(lit).partition("=")
            if not sep:
                raise TreeError(kf, kl, f"literal {lit!r} is not KEY=VALUE")
            data[k.strip()] = _unquote(v)
        for env in gen.get("envs") or ([gen["env"]] if gen.get("env") else []):
            epath = self._resolve(path, str(env), kf, kl)
            self.files_read.add(epath)
            for raw in self.cache.text(epath).splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                k, sep, v = line.partition("=")
                if not sep:
                    raise TreeError(epath, 1, f"env line {line!r} is not KEY=VALUE")
                data[k.strip()] = _unquote(v)
        for f in gen.get("files") or []:
            k, sep, rel = str(f).partition("=")
            if not sep:
                k, rel = posixpath.basename(str(f)), str(f)
            fpath = self._resolve(path, rel, kf, kl)
            if not self.source.is_file(fpath):
                raise TreeError(kf, _line_of(self.cache, kf, rel, kl), f"file {rel} not found")
            self.files_read.add(fpath)
            raw_bytes = self.source.read_bytes(fpath)
            try:
                data[k] = raw_bytes.decode("utf-8")
            except UnicodeDecodeError:
                binary[k] = base64.b64encode(raw_bytes).decode()
        gopts = {**opts, **(gen.get("options") or {})}
        md: dict[str, Any] = {"name": str(gen["name"])}
        if gen.get("namespace"):
            md["namespace"] = str(gen["namespace"])
        if gopts.get("labels"):
            md["labels"] = dict(gopts["labels"])
        if gopts.get("annotations"):
            md["annotations"] = dict(gopts["annotations"])
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": md}
        if kind == "Secret":
            obj["type"] = str(gen.get("type") or "Opaque")
            enc = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            enc.update(binary)
            if enc:
                obj["data"] = enc
        else:
            if data:
                obj["data"] = data
            if binary:
                obj["binaryData"] = binary
        if gopts.get("immutable"):
            obj["immutable"] = True
        return obj, not gopts.get("disableNameSuffixHash", False)

    def _configurations(self, path: str) -> list[NameRef]:
        self.files_read.add(path)
        out: list[NameRef] = []
        for data, _line in self.cache.parsed(path):
            for ref in (data or {}).get("nameReference") or []:
                for spec in ref.get("fieldSpecs") or []:
                    out.append(NameRef(str(ref.get("kind")), spec.get("kind"), str(spec["path"])))
        return out

    # -- transformers

    def _load_patches(self, path: str, kdoc: dict[str, Any], kf: str, kl: int) -> list[Patch]:
        out: list[Patch] = []

        def from_text(text: str, file: str, line: int, target: dict | None) -> None:
            for body, dline in parse_text(text, file):
                if body is not None:
                    out.append(Patch(body, target, file, line + dline - 1))

        for entry in kdoc.get("patchesStrategicMerge") or []:
            entry = str(entry)
            ppath = self._resolve(path, entry, kf, kl) if "\n" not in entry else ""
            if ppath and self.source.is_file(ppath):
                self.files_read.add(ppath)
                for body, dline in self.cache.parsed(ppath):
                    if body is not None:
                        out.append(Patch(clone(body), None, ppath, dline))
            else:
                from_text(entry, kf, kl, None)
        for key in ("patches", "patchesJson6902"):
            for entry in kdoc.get(key) or []:
                if not isinstance(entry, dict):
                    raise TreeError(kf, kl, f"{key} entries must be mappings")
                target = entry.get("target")
                if entry.get("path"):
                    ppath = self._resolve(path, str(entry["path"]), kf, kl)
                    if not self.source.is_file(ppath):
                        raise TreeError(kf, kl, f"patch file {entry['path']} not found")
                    self.files_read.add(ppath)
                    for body, dline in self.cache.parsed(ppath):
                        if body is not None:
                            out.append(Patch(clone(body), target, ppath, dline))
                elif entry.get("patch"):
                    from_text(str(entry["patch"]), kf, kl, target)
                else:
                    raise TreeError(kf, kl, f"{key} entry needs path or patch")
        return out

    def _transform(
        self,
        path: str,
        kdoc: dict[str, Any],
        docs: list[Doc],
        kf: str,
        kl: int,
        overlay: Overlay | None,
    ) -> None:
        patches = self._load_patches(path, kdoc, kf, kl)
        if overlay is not None:
            patches += overlay.patches
        for p in patches:
            p.apply(docs)
        namespace = kdoc.get("namespace")
        if overlay is not None and overlay.namespace:
            namespace = overlay.namespace
        if namespace:
            for d in docs:
                set_namespace(d.obj, str(namespace))
        common = {str(k): _s(v) for k, v in (kdoc.get("commonLabels") or {}).items()}
        if common:
            for d in docs:
                add_labels(d.obj, common, selectors=True, templates=True)
        for entry in kdoc.get("labels") or []:
            pairs = {str(k): _s(v) for k, v in (entry.get("pairs") or {}).items()}
            sel = bool(entry.get("includeSelectors"))
            tmpl = sel or bool(entry.get("includeTemplates"))
            for d in docs:
                add_labels(d.obj, pairs, selectors=sel, templates=tmpl)
        ann = {str(k): _s(v) for k, v in (kdoc.get("commonAnnotations") or {}).items()}
        if ann:
            for d in docs:
                add_annotations(d.obj, ann)
        if overlay is not None:
            for d in docs:
                if overlay.labels:
                    meta(d.obj).setdefault("labels", {}).update(overlay.labels)
                if overlay.annotations:
                    meta(d.obj).setdefault("annotations", {}).update(overlay.annotations)

    def _finalize_names(self, docs: list[Doc], namerefs: list[NameRef]) -> None:
        renames: dict[tuple[str, str, str], str] = {}
        for d in docs:
            if d.needs_hash and d.obj.get("kind") in ("ConfigMap", "Secret"):
                m = meta(d.obj)
                old = str(m["name"])
                m["name"] = f"{old}-{content_hash(d.obj)}"
                renames[(d.obj["kind"], str(m.get("namespace") or ""), old)] = m["name"]
        if not renames:
            return
        for d in docs:
            ns = str((d.obj.get("metadata") or {}).get("namespace") or "")
            kind = str(d.obj.get("kind"))
            specs: list[tuple[str, str]] = [
                (r.kind, r.path) for r in namerefs if r.ref_kind in (None, kind)
            ]
            root = POD_SPEC_ROOTS.get(kind)
            if root:
                specs += [("ConfigMap", f"{root}/{p}") for p in _CM_REFS]
                specs += [("Secret", f"{root}/{p}") for p in _SECRET_REFS]
            if kind == "Ingress":
                specs.append(("Secret", "spec/tls/secretName"))
            for ref_kind, fpath in specs:
                _rename_at(d.obj, fpath.split("/"), partial(_renamed, renames, ref_kind, ns))


def _s(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _strings(value: Any, file: str, line: int, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TreeError(file, line, f"{what} must be a list")
    return [str(v) for v in value]


def _line_of(cache: DocCache, file: str, needle: str, default: int) -> int:
    try:
        text = cache.text(file)
    except TreeError:
        return default
    idx = text.find(needle)
    return text.count("\n", 0, idx) + 1 if idx >= 0 else default


def _renamed(
    renames: dict[tuple[str, str, str], str], kind: str, namespace: str, name: str
) -> str | None:
    """The generated name of `kind` `namespace/name`, if a generator renamed it."""
    return renames.get((kind, namespace, name))


def _rename_at(node: Any, parts: list[str], lookup: Callable[[str], str | None]) -> None:
    if isinstance(node, list):
        for item in node:
            _rename_at(item, parts, lookup)
        return
    if not isinstance(node, dict) or not parts:
        return
    head, rest = parts[0], parts[1:]
    if head not in node:
        return
    if not rest:
        val = node[head]
        if isinstance(val, str):
            new = lookup(val)
            if new:
                node[head] = type(val)(new) if isinstance(val, Plain) else new
        return
    _rename_at(node[head], rest, lookup)


def set_namespace(obj: dict[str, Any], namespace: str) -> None:
    """kustomize's namespace transformer."""
    kind = obj.get("kind")
    m = meta(obj)
    if kind == "Namespace":
        m["name"] = namespace
        return
    if kind in ("RoleBinding", "ClusterRoleBinding"):
        old = m.get("namespace")
        for subj in obj.get("subjects") or []:
            if (
                isinstance(subj, dict)
                and subj.get("kind") == "ServiceAccount"
                and (not subj.get("namespace") or subj.get("namespace") == old)
            ):
                subj["namespace"] = namespace
    if kind in CLUSTER_SCOPED:
        return
    m["namespace"] = namespace


def add_labels(
    obj: dict[str, Any], labels: dict[str, str], selectors: bool, templates: bool
) -> None:
    meta(obj).setdefault("labels", {}).update(labels)
    kind = str(obj.get("kind"))
    root = TEMPLATE_ROOTS.get(kind)
    if templates and root:
        tmpl = _dig(obj, root.split("/"))
        if tmpl is not None:
            tmpl.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if selectors:
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(labels)
        elif kind == "Service" and isinstance(obj.get("spec"), dict):
            obj["spec"].setdefault("selector", {}).update(labels)


def add_annotations(obj: dict[str, Any], annotations: dict[str, str]) -> None:
    meta(obj).setdefault("annotations", {}).update(annotations)
    root = TEMPLATE_ROOTS.get(str(obj.get("kind")))
    if root:
        tmpl = _dig(obj, root.split("/"))
        if tmpl is not None:
            tmpl.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)


def _dig(obj: Any, parts: list[str]) -> dict[str, Any] | None:
    cur = obj
    for p in parts:
        if not isinstance(cur, dict) or not isinstance(cur.get(p), dict):
            return None
        cur = cur[p]
    return cur if isinstance(cur, dict) else None
