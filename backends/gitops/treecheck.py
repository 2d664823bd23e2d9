"""`dapper-tui check`: everything that can be proven about the Flux tree before Flux sees it.

Each check yields `Problem`s located at `file:line`. The real kustomize (`kustomize` or
`kubectl kustomize`) builds every Flux Kustomization path, in parallel; the other checks
work on fluxtree's own parse, so they run (and stay fast) where no kustomize exists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dapper.backends.gitops import fluxschemas
from dapper.backends.gitops.diskpools import diskpool_problems
from dapper.backends.gitops.filerefs import missing_file_refs
from dapper.backends.gitops.fluxtree import FluxKustomization, FluxTree
from dapper.backends.gitops.kustomize_build import (
    KUSTOMIZATION_FILES,
    describe,
    group_of,
    version_of,
)
from dapper.backends.gitops.nodelabels import forbidden_node_labels
from dapper.backends.gitops.sopscheck import (
    ENC_RE,
    SopsConfigError,
    match_rule,
    parse_rules,
    structure_problems,
)
from dapper.backends.gitops.treesource import DirSource, walk
from dapper.backends.gitops.versioncheck import version_mismatches
from dapper.backends.gitops.yamldocs import Doc, TreeError, find_line, strip_markers

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"
PINNED_RE = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
PEM_KEY_RE = re.compile(r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----")
AGE_KEY = "AGE-SECRET-KEY-1"
SENSITIVE_SUFFIXES = (
    "password", "passwd", "passphrase", "token", "apikey", "clientsecret", "privatekey",
    "secretkey", "secretaccesskey", "accesskeyid", "webhooksecret",
)  # fmt: skip
NOT_A_SECRET = {"", "true", "false", "null", "none", "~", "-", "*", "changeme", "redacted"}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    severity: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}{'warning: ' if self.severity == WARNING else ''}{self.reason}"


@dataclass
class CheckReport:
    kustomizations: int
    problems: list[Problem] = field(default_factory=list)
    kustomize_tool: str | None = None
    kustomize_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "kustomizations": self.kustomizations,
                "problems": [asdict(p) for p in self.problems],
            },
            indent=2,
        )


# ------------------------------------------------------------------ entry point


def run_checks(repo: str | Path, use_kustomize: bool = True, jobs: int = 2) -> CheckReport:
    """Load the tree at `repo` and run every check."""
    root = Path(repo).resolve()
    source = DirSource(root)
    tree = FluxTree.load(source)
    report = CheckReport(kustomizations=len(tree.kustomizations))
    seen: set[tuple[str, int, str]] = set()

    def add(items: Iterable[Problem]) -> None:
        for p in items:
            sig = (p.file, p.line, p.reason)
            if sig not in seen:
                seen.add(sig)
                report.problems.append(p)

    add(check_yaml(tree))
    kustomize_failed: set[tuple[str, str]] = set()
    if use_kustomize:
        tool = find_kustomize()
        report.kustomize_tool = " ".join(tool) if tool else None
        if tool is None:
            add(
                [
                    Problem(
                        "",
                        0,
                        WARNING,
                        "no kustomize or kubectl on PATH: kustomize builds "
                        "skipped (dapper's own renderer still built every path)",
                    )
                ]
            )
        else:
            started = time.monotonic()
            results = kustomize_all(tree, root, tool, jobs)
            report.kustomize_seconds = time.monotonic() - started
            for ks, problem in results:
                kustomize_failed.add(ks.key)
                add([problem])
    add(check_tree_errors(tree, kustomize_failed))
    add(check_dependencies(tree))
    add(check_helm_releases(tree))
    add(check_schemas(tree))
    add(check_variables(tree))
    add(check_sops(tree, root))
    add(check_plaintext(tree))
    add(Problem(f, line, ERROR, reason) for f, line, reason in version_mismatches(root))
    add(Problem(f, line, ERROR, reason) for f, line, reason in forbidden_node_labels(source))
    add(Problem(f, line, ERROR, reason) for f, line, reason in diskpool_problems(_docs(tree)))
    add(Problem(f, line, ERROR, reason) for f, line, reason in missing_file_refs(source))
    report.problems.sort(key=lambda p: (p.file == "", p.file, p.line, p.reason))
    return report


def _tree_yaml(tree: FluxTree) -> Iterator[str]:
    yield from tree._tree_files()


def _docs(tree: FluxTree) -> Iterator[tuple[str, int, dict[str, Any], str]]:
    """(file, line, object, file text) of every object written in the tree's YAML."""
    for path in _tree_yaml(tree):
        try:
            docs, text = tree.cache.docs(path), tree.cache.text(path)
        except TreeError:
            continue  # check_yaml reports it
        for d in docs:
            yield d.file, d.line, d.obj, text


def _ks_where(ks: FluxKustomization) -> tuple[str, int]:
    return (ks.file, ks.line) if ks.file else (ks.path, 0)


# ------------------------------------------------------------------ YAML and builds


def check_yaml(tree: FluxTree) -> Iterator[Problem]:
    paths = list(_tree_yaml(tree))
    if tree.source.is_file(".sops.yaml"):
        paths.append(".sops.yaml")
    for path in paths:
        try:
            tree.cache.parsed(path)
        except TreeError as exc:
            yield Problem(exc.file, exc.line, ERROR, exc.reason)


def check_tree_errors(tree: FluxTree, kustomize_failed: set[tuple[str, str]]) -> Iterator[Problem]:
    for key, exc in tree.errors.items():
        if key in kustomize_failed and "does not exist" not in exc.reason:
            continue  # kustomize already said why, more authoritatively
        if exc.reason.startswith("malformed YAML"):
            continue  # reported by check_yaml at its own file
        ks = tree.get(*key)
        name = f"Kustomization {key[0]}/{key[1]}"
        yield Problem(exc.file or (ks.file if ks else ""), exc.line, ERROR, f"{name}: {exc.reason}")
    for first, dup in tree.duplicates:
        yield Problem(
            dup.file, dup.line, ERROR,
            f"Kustomization {dup.namespace}/{dup.name} is defined twice "
            f"(also {first.file}:{first.line})",
        )  # fmt: skip
    for w in tree.renderer.warnings:
        yield Problem(w.file, w.line, WARNING, w.reason)


def find_kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _overlay_dir(tree: FluxTree, ks: FluxKustomization, root: Path, tmp: Path) -> Path:
    """The directory kustomize should build: the path itself, or an overlay that adds
    what Flux adds (a generated kustomization, spec.components)."""
    path = root / ks.path
    kfile = tree.renderer.kustomization_file(ks.path)
    if kfile is not None and not ks.components:
        return path
    overlay = tmp / f"{ks.namespace}--{ks.name}"
    overlay.mkdir(parents=True, exist_ok=True)
    generated = tree.renderer.flux_generated(ks.path)["resources"] if kfile is None else []
    targets = [path] if kfile is not None else [path / r for r in generated]
    # kustomize refuses absolute roots; relative paths out of the temp dir are fine.
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(t, overlay) for t in targets],
        "components": [os.path.relpath(root / c, overlay) for c in ks.components],
    }
    (overlay / "kustomization.yaml").write_text(json.dumps(doc))
    return overlay


def _kustomize_error(stderr: str) -> str:
    m = re.search(r'err="(.*)"\s*$', stderr.strip(), re.S)
    if m:  # kubectl's klog line wraps kustomize's message
        return m.group(1).replace('\\"', '"').strip()
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.lower().startswith("error")]
    msg = (errs[-1] if errs else lines[-1]) if lines else "failed without a message"
    return msg.removeprefix("Error: ").removeprefix("error: ")


def kustomize_all(
    tree: FluxTree, root: Path, tool: list[str], jobs: int
) -> list[tuple[FluxKustomization, Problem]]:
    todo = [ks for ks in tree.kustomizations if tree.source.is_dir(ks.path)]
    failures: list[tuple[FluxKustomization, Problem]] = []
    with tempfile.TemporaryDirectory(prefix="dapper-check-") as tmpdir:
        tmp = Path(tmpdir)

        def one(ks: FluxKustomization) -> tuple[FluxKustomization, Problem] | None:
            target = _overlay_dir(tree, ks, root, tmp)
            cmd = [*tool, "--load-restrictor=LoadRestrictionsNone", str(target)]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=180,
                    env={**os.environ, "KUSTOMIZE_PLUGIN_HOME": str(tmp)},
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                reason = "kustomize build timed out"
            else:
                if proc.returncode == 0:
                    return None
                reason = _kustomize_error(proc.stderr)
                log.debug("kustomize %s failed: %s", ks.path, proc.stderr)
            reason = reason.replace(str(root) + "/", "")
            file, line = _ks_where(ks)
            return ks, Problem(
                file, line, ERROR, f"Kustomization {ks.namespace}/{ks.name}: kustomize build "
                f"./{ks.path} failed: {reason}"
            )  # fmt: skip

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for result in pool.map(one, todo):
                if result is not None:
                    failures.append(result)
    return failures


# ------------------------------------------------------------------ graph and charts


def check_dependencies(tree: FluxTree) -> Iterator[Problem]:
    keys = {ks.key for ks in tree.kustomizations}
    for ks in tree.kustomizations:
        for dep in ks.depends_on:
            if dep not in keys:
                line = _line_in(tree, ks.file, f"name: {dep[1]}", ks.line)
                yield Problem(
                    ks.file, line, ERROR,
                    f"Kustomization {ks.namespace}/{ks.name} dependsOn {dep[0]}/{dep[1]}, "
                    "which no Kustomization defines",
                )  # fmt: skip
    for cycle in tree.cycles():
        first = tree.get(*cycle[0])
        file, line = _ks_where(first) if first else ("", 0)
        names = " -> ".join(f"{n}/{k}" for n, k in cycle)
        yield Problem(file, line, ERROR, f"dependsOn cycle: {names}")


def _pinned(version: str) -> bool:
    return bool(PINNED_RE.match(version.strip()))


def check_helm_releases(tree: FluxTree) -> Iterator[Problem]:
    for hr in tree.helm_releases:
        name = f"HelmRelease {hr.namespace}/{hr.name}"
        if hr.chart_ref is not None:
            kind, sname, sns = hr.chart_ref
            if tree.chart_source(kind, sns, sname) is None:
                yield Problem(
                    hr.file, _line_in(tree, hr.file, "chartRef", hr.line), ERROR,
                    f"{name}: chartRef {kind} {sns}/{sname} is not defined in the tree",
                )  # fmt: skip
            continue
        if not hr.source_kind:
            continue  # the schema check reports a HelmRelease without a chart
        if tree.chart_source(hr.source_kind, hr.source_namespace, hr.source_name) is None:
            yield Problem(
                hr.file, _line_in(tree, hr.file, "sourceRef", hr.line), ERROR,
                f"{name}: chart source {hr.source_kind} {hr.source_namespace}/{hr.source_name} "
                "is not defined in the tree",
            )  # fmt: skip
        if hr.source_kind == "HelmRepository" and not _pinned(hr.version):
            what = "has no version (latest)" if not hr.version else f"{hr.version!r} is a range"
            yield Problem(
                hr.file, _line_in(tree, hr.file, "version:", hr.line), ERROR,
                f"{name}: chart {hr.chart} is not pinned: {what}",
            )  # fmt: skip
    for src in tree.chart_sources:
        if src.kind != "OCIRepository":
            continue
        ref = src.ref or {}
        tag, semver = str(ref.get("tag") or ""), str(ref.get("semver") or "")
        if ref.get("digest") or (tag and _pinned(tag) and not semver):
            continue
        what = f"semver {semver!r} is a range" if semver else f"tag {tag or 'latest'!r}"
        yield Problem(
            src.file, _line_in(tree, src.file, "ref:", src.line), ERROR,
            f"OCIRepository {src.namespace}/{src.name} is not pinned: {what}",
        )  # fmt: skip


# ------------------------------------------------------------------ schemas


@lru_cache(maxsize=1)
def _k8s_schema_dir() -> tuple[Path, str] | None:
    try:
        import kubernetes_validate.utils as kvu
    except ImportError:
        return None
    version = kvu.latest_version()
    base = Path(kvu.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    return (base, version) if base.is_dir() else None


@lru_cache(maxsize=1)
def _k8s_registry() -> Any:
    from referencing import Registry, Resource

    found = _k8s_schema_dir()
    assert found is not None
    defs = json.loads((found[0] / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


@lru_cache(maxsize=512)
def _k8s_validator(kind: str, api_version: str) -> Any | None:
    found = _k8s_schema_dir()
    if found is None:
        return None
    import jsonschema

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = found[0] / f"{kind.lower()}-{api}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_k8s_registry())


@lru_cache(maxsize=32)
def _flux_validator(group: str, kind: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(fluxschemas.SCHEMAS[(group, kind)])


def _is_core(api_version: str) -> bool:
    g = group_of(api_version)
    return g == "" or "." not in g or (g.endswith(".k8s.io") and not g.startswith("snapshot."))


def _err_path(err: Any) -> str:
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(object)"


def _short(msg: str) -> str:
    msg = msg.replace("\n", " ")
    return msg if len(msg) <= 160 else msg[:157] + "..."


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Reasons an object does not match its schema (core via kubernetes-validate)."""
    api, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    group = group_of(api)
    body = {k: v for k, v in obj.items() if k != "sops"}
    if (group, kind) in fluxschemas.SCHEMAS:
        if version_of(api) not in fluxschemas.SUPPORTED_VERSIONS[(group, kind)]:
            want = ", ".join(fluxschemas.SUPPORTED_VERSIONS[(group, kind)])
            return [f"{kind} apiVersion {api} is not served (use {group}/{want})"]
        validator = _flux_validator(group, kind)
    elif _is_core(api):
        validator = _k8s_validator(kind, api)
        if validator is None:
            return []
    else:
        return []
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{_err_path(e)}: {_short(e.message)}" for e in errors[:3]]


CORE_SCHEMAS_MISSING = (
    "core Kubernetes kinds were not checked against their schemas: "
    "install them with pip install 'dapper-tui[check]'"
)


def check_schemas(tree: FluxTree) -> Iterator[Problem]:
    if _k8s_schema_dir() is None:  # the console's plain install leaves the 100 MB out
        yield Problem("", 0, WARNING, CORE_SCHEMAS_MISSING)
    done: set[tuple[str, int, str]] = set()
    for ks in tree.kustomizations:
        if ks.key in tree.errors:
            continue
        for d in tree.render(ks):
            obj = strip_markers(d.obj)
            for reason in validate_object(obj):
                sig = (d.file, d.line, reason)
                if sig in done:
                    continue
                done.add(sig)
                yield Problem(d.file, d.line, ERROR, f"{describe(obj)}: {reason}")


# ------------------------------------------------------------------ variables


def check_variables(tree: FluxTree) -> Iterator[Problem]:
    for ks in tree.kustomizations:
        for name, d in tree.undefined_variables(ks):
            file, line = _var_location(tree, ks, d, name)
            yield Problem(
                file, line, ERROR,
                f"undefined variable ${{{name}}} (Kustomization {ks.namespace}/{ks.name}: not in "
                "cluster-settings, cluster-secrets or postBuild.substitute, and no default)",
            )  # fmt: skip


def _var_location(tree: FluxTree, ks: FluxKustomization, d: Doc, name: str) -> tuple[str, int]:
    """Where `${name}` is written: the object's file, else a file the object was made
    from (a generator's input), else the object's start."""
    pattern = re.compile(r"\$\{" + re.escape(name) + r"\b")
    for file in [d.file, *tree.files_of(ks)]:
        if not tree.source.is_file(file):
            continue
        try:
            text = tree.cache.text(file)
        except TreeError:
            continue
        m = pattern.search(text)
        if m:
            return file, text.count("\n", 0, m.start()) + 1
    return d.file, d.line


def _line_in(tree: FluxTree, file: str, needle: str, default: int) -> int:
    if not file or not tree.source.is_file(file):
        return default
    try:
        text = tree.cache.text(file)
    except TreeError:
        return default
    start = _offset_of_line(text, default)
    idx = text.find(needle, start)
    return text.count("\n", 0, idx) + 1 if idx >= 0 else default


def _offset_of_line(text: str, line: int) -> int:
    off = 0
    for _ in range(max(0, line - 1)):
        nxt = text.find("\n", off)
        if nxt < 0:
            return off
        off = nxt + 1
    return off


# ------------------------------------------------------------------ SOPS and plaintext


def check_sops(tree: FluxTree, root: Path) -> Iterator[Problem]:
    sops_paths = [p for p in _tree_yaml(tree) if p.endswith((".sops.yaml", ".sops.yml"))]
    rules = None
    if tree.source.is_file(".sops.yaml"):
        try:
            parsed = tree.cache.parsed(".sops.yaml")
            rules = parse_rules(parsed[0][0] if parsed else None)
        except TreeError:
            pass  # check_yaml reports it
        except SopsConfigError as exc:
            yield Problem(".sops.yaml", 1, ERROR, str(exc))
    elif sops_paths:
        yield Problem(".sops.yaml", 0, ERROR, "missing: SOPS files exist but no creation rules")
    for path in sops_paths:
        if rules is None:
            break
        rule = match_rule(rules, path)
        if rule is None:
            yield Problem(path, 1, ERROR, "matches no creation rule in .sops.yaml")
            continue
        try:
            docs = tree.cache.parsed(path)
        except TreeError:
            continue
        for data, line in docs:
            if data is None:
                continue
            for field_path, reason in structure_problems(data, rule):
                leaf = field_path.rsplit(".", 1)[-1].split("[")[0]
                at = _line_in(tree, path, f"{leaf}:", line) if field_path else line
                where = f"{field_path}: " if field_path else ""
                yield Problem(path, at, ERROR, f"{where}{reason}")
    # Secrets outside SOPS: in any file, and from secretGenerators.
    for path in _tree_yaml(tree):
        if path.endswith((".sops.yaml", ".sops.yml")):
            continue
        try:
            file_docs = tree.cache.docs(path)
        except TreeError:
            continue
        for doc in file_docs:
            plaintext = doc.obj.get("data") or doc.obj.get("stringData")
            if doc.obj.get("kind") == "Secret" and plaintext:
                yield Problem(
                    path, doc.line, ERROR,
                    f"{describe(doc.obj)} is a plaintext Secret: Secrets belong in *.sops.yaml "
                    "files encrypted with sops",
                )  # fmt: skip
    for ks in tree.kustomizations:
        if ks.key in tree.errors:
            continue
        for doc in tree.render(ks):
            if doc.obj.get("kind") == "Secret" and Path(doc.file).name in KUSTOMIZATION_FILES:
                yield Problem(
                    doc.file, _line_in(tree, doc.file, "secretGenerator", doc.line), ERROR,
                    f"secretGenerator makes plaintext {describe(doc.obj)}: "
                    "use a *.sops.yaml Secret",
                )  # fmt: skip


def _sensitive(key: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    if norm.startswith("existing") or norm == "secret":
        return norm == "secret"
    return norm.endswith(SENSITIVE_SUFFIXES)


def _literal_secret(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    v = value.strip()
    if v.lower() in NOT_A_SECRET or "${" in v or "{{" in v or ENC_RE.match(v):
        return False
    return not (v.startswith("<") and v.endswith(">"))


def _scan_values(node: Any, path: str, keys: bool = True) -> Iterator[tuple[str, str]]:
    """(field path, key) of sensitive-looking keys with literal values in a values tree;
    with keys=False only `{name: X_PASSWORD, value: literal}` pairs (container env)."""
    if isinstance(node, dict):
        name = node.get("name")
        if (
            isinstance(name, str)
            and "value" in node
            and _sensitive(name)
            and _literal_secret(node["value"])
        ):
            yield f"{path}.value" if path else "value", name
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            if keys and _sensitive(str(k)) and _literal_secret(v):
                yield sub, str(k)
            else:
                yield from _scan_values(v, sub, keys)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _scan_values(v, f"{path}[{i}]", keys)


def check_plaintext(tree: FluxTree) -> Iterator[Problem]:
    for path in walk(tree.source, "kubernetes") if tree.source.is_dir("kubernetes") else []:
        if path.endswith((".sops.yaml", ".sops.yml")):
            continue
        try:
            text = tree.cache.text(path)
        except TreeError:
            continue  # binary or unreadable: not ours to judge
        m = PEM_KEY_RE.search(text)
        if m:
            yield Problem(
                path,
                find_line(text, m.group(0)),
                ERROR,
                "PEM private key in plaintext: move it into a *.sops.yaml Secret",
            )
        if AGE_KEY in text:
            yield Problem(
                path,
                find_line(text, AGE_KEY),
                ERROR,
                "age private key (AGE-SECRET-KEY-) in plaintext outside lab/keys",
            )
        if not path.endswith((".yaml", ".yml")):
            continue
        try:
            docs = tree.cache.docs(path)
        except TreeError:
            continue
        for d in docs:
            kind = d.obj.get("kind")
            if kind == "ConfigMap":
                node, base = d.obj.get("data") or {}, "data"
            elif kind == "HelmRelease":
                node, base = (d.obj.get("spec") or {}).get("values") or {}, "spec.values"
            elif kind == "Secret":
                continue
            elif kind is None:
                node, base = d.obj, ""  # a plain values file (helm-values.yaml)
            else:
                node, base = d.obj.get("spec") or {}, "spec"
            for field_path, key in _scan_values(
                node, base, keys=kind in (None, "ConfigMap", "HelmRelease")
            ):
                yield Problem(
                    path, _line_in(tree, path, f"{key}", d.line), ERROR,
                    f"{field_path} looks like a secret in plaintext: reference a SOPS Secret "
                    "or use ${VAR} from cluster-secrets",
                )  # fmt: skip
    for extra in (".sops.yaml", "README.md"):
        if tree.source.is_file(extra):
            try:
                text = tree.cache.text(extra)
            except TreeError:
                continue
            if AGE_KEY in text:
                yield Problem(
                    extra,
                    find_line(text, AGE_KEY),
                    ERROR,
                    "age private key (AGE-SECRET-KEY-) in plaintext outside lab/keys",
                )
