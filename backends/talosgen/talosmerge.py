"""Talos config patches: loading them, and Talos's own strategic merge (not Kubernetes').

Talos merges a patch into the typed config (pkg/machinery/config/merge), and its rules
differ from a Kubernetes strategic merge patch (`dapper.backends.patching`), so they live
here, applied to plain data with the few typed exceptions written out:

- maps merge key by key; a scalar in the patch replaces the config's unless it is a Go
  zero value ("" or 0; `false` always replaces); null changes nothing;
- lists are appended, except `cluster.network.podSubnets` / `serviceSubnets` (replaced),
  `cluster.apiServer.auditPolicy` (a map, replaced), and the keyed lists:
  `machine.network.interfaces` by `interface` or else an equal `deviceSelector`, their
  `vlans` by `vlanId`, `cluster.apiServer.admissionControl` by `name`; a matching item is
  merged with the same rules, another one is appended;
- `$patch: delete` in a map removes that map (or that keyed list item).

A patch file whose document is a YAML list is an RFC 6902 JSON patch (Talos's LoadPatch);
it goes through the project's one JSON-patch engine, `dapper.backends.patching.json_patch`.
Documents other than v1alpha1 (with a `kind`) are merged by apiVersion/kind/name, or
appended, as Talos's StrategicMerge does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.backends.patching import PatchError, json_patch
from dapper.backends.talosgen.talconfig import TalConfigError, substitute
from dapper.backends.talosgen.yamlio import YamlLoadError, load_documents, to_plain

KeyPath = tuple[str, ...]
ITEM = "*"  # a list item in a path

REPLACED: frozenset[KeyPath] = frozenset(
    {
        ("cluster", "network", "podSubnets"),
        ("cluster", "network", "serviceSubnets"),
        ("cluster", "apiServer", "auditPolicy"),
    }
)


def _device_matches(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    if right.get("interface"):
        return left.get("interface") == right["interface"]
    if right.get("deviceSelector") is not None:
        return left.get("deviceSelector") == right["deviceSelector"]
    return False


def _field_matches(name: str) -> Callable[[Mapping[str, Any], Mapping[str, Any]], bool]:
    def matches(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
        return right.get(name) is not None and left.get(name) == right.get(name)

    return matches


KEYED: dict[KeyPath, Callable[[Mapping[str, Any], Mapping[str, Any]], bool]] = {
    ("machine", "network", "interfaces"): _device_matches,
    ("machine", "network", "interfaces", ITEM, "vlans"): _field_matches("vlanId"),
    ("cluster", "apiServer", "admissionControl"): _field_matches("name"),
}

_DELETE = {"$patch": "delete"}


class MergeError(ValueError):
    """A patch whose shape does not fit the config (a map onto a list, ...)."""


def talos_merge(left: Any, right: Any, path: KeyPath = ()) -> Any:
    """`right` merged into a copy of `left` with Talos's rules (see the module docstring)."""
    return _merge(copy.deepcopy(left), right, path)


def _is_delete(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("$patch") == "delete"


def _merge(left: Any, right: Any, path: KeyPath) -> Any:
    if right is None:
        return left
    if left is None:
        return _clean(right)
    if path in REPLACED:
        return _clean(right) if right not in ({}, []) else left
    if isinstance(left, dict):
        if not isinstance(right, Mapping):
            raise MergeError(f"{_dotted(path)}: a map in the config, not in the patch")
        for key, value in right.items():
            if key == "$patch":
                continue
            if _is_delete(value):
                left.pop(key, None)
            else:
                left[key] = _merge(left.get(key), value, (*path, str(key)))
        return left
    if isinstance(left, list):
        if not isinstance(right, list):
            raise MergeError(f"{_dotted(path)}: a list in the config, not in the patch")
        matches = KEYED.get(path)
        if matches is None:
            return left + [_clean(v) for v in right]
        for item in right:
            existing = next(
                (
                    i
                    for i, old in enumerate(left)
                    if isinstance(old, Mapping) and isinstance(item, Mapping) and matches(old, item)
                ),
                None,
            )
            if existing is None:
                if not _is_delete(item):
                    left.append(_clean(item))
            elif _is_delete(item):
                del left[existing]
            else:
                left[existing] = _merge(left[existing], item, (*path, ITEM))
        return left
    if isinstance(right, Mapping | list):
        raise MergeError(f"{_dotted(path)}: a scalar in the config, not in the patch")
    if isinstance(right, bool):
        return right
    if right == "" or (isinstance(right, int | float) and right == 0):
        return left  # Go's zero value never overwrites
    return right


def _clean(value: Any) -> Any:
    """A patch value without `$patch` directives (what lands in the config)."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if k != "$patch" and not _is_delete(v)}
    if isinstance(value, list):
        return [_clean(v) for v in value if not _is_delete(v)]
    return value


def _dotted(path: KeyPath) -> str:
    return ".".join(path) or "(top)"


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ConfigPatch:
    """One patch: a strategic merge (documents) or an RFC 6902 operation list."""

    source: str  # file path, or "inline patch N"
    documents: tuple[Any, ...] = ()
    operations: tuple[Any, ...] = ()

    @property
    def is_json6902(self) -> bool:
        return bool(self.operations)


def load_patch(reference: str, base: Path, env: Mapping[str, str]) -> ConfigPatch:
    """A talconfig `patches` entry: `@./file.yaml` (relative to `base`) or inline YAML."""
    if reference.startswith("@"):
        path = (base / reference[1:]).resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise TalConfigError(f"{base / reference[1:]}: {reason}") from None
        source = str(base / reference[1:])
        text = substitute(text, env, Path(source))
    else:
        source, text = "inline patch", reference
    try:
        docs = [to_plain(d) for d in load_documents(text)]
    except YamlLoadError as exc:
        raise TalConfigError(f"{source}:{exc.line}: not valid YAML: {exc.reason}") from None
    if len(docs) == 1 and isinstance(docs[0], list):
        return ConfigPatch(source=source, operations=tuple(docs[0]))
    for doc in docs:
        if not isinstance(doc, Mapping):
            raise TalConfigError(f"{source}: a patch document must be a map or an op list")
    return ConfigPatch(source=source, documents=tuple(docs))


def is_v1alpha1(doc: Mapping[str, Any]) -> bool:
    legacy = any(k in doc for k in ("machine", "cluster", "debug", "persist"))
    return "kind" not in doc and (doc.get("version") == "v1alpha1" or legacy)


def _document_id(doc: Mapping[str, Any]) -> str:
    if is_v1alpha1(doc):
        return "v1alpha1"
    return f"{doc.get('apiVersion', '')}/{doc.get('kind', '')}/{doc.get('name', '')}"


def apply_patch(documents: list[Any], patch: ConfigPatch) -> list[Any]:
    """`documents` (v1alpha1 first) with `patch` applied; errors name the patch file."""
    result = copy.deepcopy(documents)
    try:
        if patch.is_json6902:
            index = next(i for i, d in enumerate(result) if is_v1alpha1(d))
            result[index] = json_patch(result[index], list(patch.operations))
            return result
        by_id = {_document_id(d): i for i, d in enumerate(result)}
        for doc in patch.documents:
            found = by_id.get(_document_id(doc))
            if found is None:
                if not _is_delete(doc):
                    result.append(_clean(doc))
                    by_id[_document_id(doc)] = len(result) - 1
            else:
                result[found] = _merge(result[found], doc, ())
    except (PatchError, MergeError) as exc:
        raise TalConfigError(f"{patch.source}: {exc}") from None
    return result
