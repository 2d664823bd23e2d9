"""The three Kubernetes patch formats, one implementation for the kustomize renderer and
the lab's API server.

- JSON merge patch (RFC 7386): maps merge, null deletes a key, anything else replaces.
- Strategic merge patch: a merge patch where a list field with a patch merge key (as the
  Kubernetes API types declare it: containers by `name`, volumeMounts by `mountPath`,
  container ports by `containerPort`, Service ports by `port`, ...) merges item by item,
  a merge-strategy list of scalars (finalizers) merges as a set, and every other list is
  replaced. Directives: `$patch: replace` (a map or list replaced wholesale),
  `$patch: delete` (a map, or a keyed list item, removed), `$retainKeys` (only the
  listed keys stay), `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is an
  ordering hint and is dropped. Custom resources have no schema to name merge keys: pass
  `merge_keys={}` and every list is replaced (what the API server and kustomize do).
- JSON patch (RFC 6902): add, remove, replace, move, copy, test.

Inputs are never modified; errors raise PatchError with a one-line reason.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# list field -> patch merge key ("" = a list of scalars merged as a set), from the
# patchMergeKey/patchStrategy tags of the core API types. Fields absent here (tolerations,
# args, command, envFrom, rules, ...) have no merge strategy upstream: a patch replaces them.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "env": "name",
    "ports": "containerPort",  # ServicePort lists are keyed by `port` (see _merge_key)
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "finalizers": "",
}

_DELETE = object()  # what a `$patch: delete` map merges to: its key goes away


class PatchError(ValueError):
    """A patch that cannot apply to its target (bad pointer, failed test, bad op)."""


# ---------------------------------------------------------------- JSON merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: the result of applying merge patch `patch` to `target`."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- strategic merge patch


def strategic_merge(target: Any, patch: Any, merge_keys: Mapping[str, str] = MERGE_KEYS) -> Any:
    """The result of strategic-merging `patch` into `target`; None when the patch is a
    top-level `$patch: delete` (the object goes away)."""
    merged = _merge(copy.deepcopy(target), patch, merge_keys)
    return None if merged is _DELETE else merged


def _merge(target: Any, patch: Any, keys: Mapping[str, str]) -> Any:
    if not isinstance(patch, Mapping):
        return drop_directives(copy.deepcopy(patch))
    directive = patch.get("$patch")
    if directive == "replace":
        return drop_directives(copy.deepcopy(dict(patch)))
    if directive == "delete":
        return _DELETE
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if is_directive(key):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(
                key, current if isinstance(current, list) else [], value, keys
            )
        else:
            merged = _merge(result.get(key), value, keys)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(
    field: str, current: list[Any], patch: list[Any], keys: Mapping[str, str]
) -> str | None:
    key = keys.get(field)
    if field == "ports" and key == "containerPort":
        items = [i for i in (*current, *patch) if isinstance(i, Mapping)]
        if items and not any("containerPort" in i for i in items):
            return "port"  # a Service's ports
    return key


def _merge_list(
    field: str, current: list[Any], patch: list[Any], keys: Mapping[str, str]
) -> list[Any]:
    if any(isinstance(i, Mapping) and i.get("$patch") == "replace" for i in patch):
        return [drop_directives(i) for i in patch if not (isinstance(i, Mapping) and "$patch" in i)]
    key = _merge_key(field, current, patch, keys)
    if key is None:
        return [drop_directives(copy.deepcopy(i)) for i in patch]
    if key == "":
        return [*current, *(copy.deepcopy(v) for v in patch if v not in current)]
    out = list(current)
    for item in patch:
        if not isinstance(item, Mapping) or key not in item:
            out.append(drop_directives(copy.deepcopy(item)))
            continue
        index = next(
            (n for n, c in enumerate(out) if isinstance(c, Mapping) and c.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append(drop_directives(copy.deepcopy(dict(item))))
        else:
            out[index] = _merge(out[index], item, keys)
    return out


DIRECTIVES = ("$patch", "$retainKeys")
DIRECTIVE_PREFIXES = ("$deleteFromPrimitiveList/", "$setElementOrder/")


def is_directive(key: object) -> bool:
    """A strategic-merge directive; other keys that start with `$` (a `${VAR}` that
    postBuild substitutes later) are data, as kustomize keeps them."""
    text = str(key)
    return text in DIRECTIVES or text.startswith(DIRECTIVE_PREFIXES)


def drop_directives(node: Any) -> Any:
    """`node` without `$patch`-style keys, at every depth."""
    if isinstance(node, Mapping):
        return {k: drop_directives(v) for k, v in node.items() if not is_directive(k)}
    if isinstance(node, list):
        return [drop_directives(v) for v in node]
    return node


# ---------------------------------------------------------------- JSON patch


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: it must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(p)]
            except (ValueError, IndexError):
                raise PatchError(f"index {p} out of range") from None
        elif isinstance(doc, dict):
            if p not in doc:
                raise PatchError(f"doc is missing path: {p}")
            doc = doc[p]
        else:
            raise PatchError(f"cannot descend into {p}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
            return doc
        try:
            index = int(last)
        except ValueError:
            raise PatchError(f"invalid index {last}") from None
        if not 0 <= index <= len(parent):
            raise PatchError(f"index {index} out of range")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add into a scalar at {last}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        try:
            return parent.pop(int(last))
        except (ValueError, IndexError):
            raise PatchError(f"index {last} out of range") from None
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    raise PatchError(f"doc is missing path: /{'/'.join(parts)}")


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: the result of applying the operation list `ops` to `target`."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise PatchError("each JSON patch operation needs 'op' and 'path'")
        kind = op["op"]
        parts = _pointer(str(op["path"]))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _walk(doc, parts)  # must exist
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            value = copy.deepcopy(_walk(doc, source))
            if kind == "move":
                _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
        else:
            raise PatchError(f"unexpected kind of operation: {kind!r}")
    return doc
