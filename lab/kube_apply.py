"""Server-side apply and field ownership (metadata.managedFields), as the API server does it.

Each manager owns a set of field paths. An apply (application/apply-patch+yaml) merges the
sent configuration into the live object, takes ownership of the fields it sets, removes
the fields it set last time and no longer sets (unless someone else owns them), and fails
with a 409 naming the other manager and fields when it would change a value another
manager owns, unless force=true moves that ownership. Ordinary writes (update, patch,
create) record an Update entry for the fields they change, taking them from other owners.
Lists with a merge key (containers by name...) are maps of items; other lists are atomic.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from dapper.backends.patching import MERGE_KEYS
from dapper.lab.store import StoreError, now_rfc3339
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

Path = tuple[str, ...]  # FieldsV1 path elements: "f:name", 'k:{"name":"app"}', 'v:"x"'
# set by the server, never owned by a manager
_SERVER_FIELDS = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)


def parse_apply_body(raw: bytes) -> dict:
    """An apply body is YAML (JSON is YAML too)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        try:
            doc = YAML(typ="safe", pure=True).load(raw.decode())
        except (YAMLError, UnicodeDecodeError) as exc:
            raise StoreError(400, "BadRequest", f"error decoding YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise StoreError(400, "BadRequest", "the apply configuration must be an object")
    return doc


# -- field sets ----------------------------------------------------------------------------


def _item_key(field: str, item: Any) -> str:
    key = MERGE_KEYS.get(field)
    if key and isinstance(item, dict) and key in item:
        return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))
    return "v:" + json.dumps(item, separators=(",", ":"), sort_keys=True)


def _keyed(field: str, value: Any) -> bool:
    return field in MERGE_KEYS and isinstance(value, list)


def field_set(obj: Any, prefix: Path = (), field: str = "") -> set[Path]:
    """The leaf paths a configuration sets (apiVersion, kind, name, namespace excluded)."""
    out: set[Path] = set()
    if isinstance(obj, dict) and (obj or not prefix):
        for k, v in obj.items():
            if not prefix and k in ("apiVersion", "kind", "status"):
                continue
            if prefix == ("f:metadata",) and k in ("name", "namespace", *_SERVER_FIELDS):
                continue
            out |= field_set(v, (*prefix, f"f:{k}"), k)
        return out
    if _keyed(field, obj) and obj:
        for item in obj:
            path = (*prefix, _item_key(field, item))
            out.add((*path, "."))
            if isinstance(item, dict):
                out |= {p for p in field_set(item, path) if p}
        return out
    return {prefix} if prefix else out


def to_fields_v1(paths: set[Path]) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields_v1(tree: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for part, sub in (tree or {}).items():
        path = (*prefix, part)
        if part == "." or not sub:
            out.add(path)
        else:
            out |= from_fields_v1(sub, path)
    return out


def _value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    node = obj
    for part in path:
        if part == ".":
            break
        kind, _, rest = part.partition(":")
        if kind == "f" and isinstance(node, dict) and rest in node:
            node = node[rest]
        elif kind in ("k", "v") and isinstance(node, list):
            want = json.loads(rest)
            match = [i for i in node if _matches(kind, i, want)]
            if not match:
                return False, None
            node = match[0]
        else:
            return False, None
    return True, node


def _matches(kind: str, item: Any, want: Any) -> bool:
    if kind == "v":
        return item == want
    return isinstance(item, dict) and all(item.get(a) == b for a, b in want.items())


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        if part == ".":
            continue
        kind, _, rest = part.partition(":")
        out += f".{rest}" if kind == "f" else f"[{rest.strip('{}').replace(':', '=')}]"
    return out


# -- merging -------------------------------------------------------------------------------


def merge(live: Any, applied: Any, field: str = "") -> Any:
    """The applied configuration laid over the live object: maps and keyed lists merge."""
    if isinstance(applied, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            out[k] = merge(live.get(k), v, k)
        return out
    if _keyed(field, applied) and isinstance(live, list):
        out_list = copy.deepcopy(live)
        for item in applied:
            key = _item_key(field, item)
            idx = next((i for i, c in enumerate(out_list) if _item_key(field, c) == key), None)
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = merge(out_list[idx], item)
        return out_list
    return copy.deepcopy(applied)


def _remove(obj: Any, path: Path) -> None:
    """Delete the field (or keyed list item) at `path` from `obj`, if it is there."""
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    found, parent = _value_at(obj, path[:-1])
    if not found:
        return
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif isinstance(parent, list):
        ok, item = _value_at(parent, path[-1:])
        if ok:
            parent[:] = [i for i in parent if i is not item]


# -- managedFields bookkeeping -------------------------------------------------------------


def _entries(obj: dict) -> list[dict]:
    return list(obj.get("metadata", {}).get("managedFields") or [])


def _entry(manager: str, operation: str, api_version: str, paths: set[Path], sub: str) -> dict:
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
    if sub:
        entry["subresource"] = sub
    return entry


def _store_entries(obj: dict, entries: list[dict]) -> None:
    kept = [e for e in entries if e.get("fieldsV1")]
    meta = obj.setdefault("metadata", {})
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)


def conflict_error(conflicts: list[tuple[str, str, Path]]) -> StoreError:
    """The 409 the API server sends: the message structured-merge-diff words, one
    FieldManagerConflict cause per field naming its manager."""
    if len(conflicts) == 1:
        manager, version, path = conflicts[0]
        text = f'conflict with "{manager}" using {version}: {_dotted(path)}'
    else:
        groups: dict[tuple[str, str], list[str]] = {}
        for manager, version, path in conflicts:
            groups.setdefault((manager, version), []).append(_dotted(path))
        text = "\n".join(
            f'conflicts with "{m}" using {v}:\n' + "\n".join(f"- {f}" for f in fields)
            for (m, v), fields in groups.items()
        )
    plural = "conflict" if len(conflicts) == 1 else "conflicts"
    err = StoreError(409, "Conflict", f"Apply failed with {len(conflicts)} {plural}: {text}")
    err.causes = [  # type: ignore[attr-defined]
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{m}" using {v}',
            "field": _dotted(p),
        }
        for m, v, p in conflicts
    ]
    err.details = {}  # type: ignore[attr-defined]
    return err


def server_side_apply(
    live: dict | None,
    applied: dict,
    *,
    manager: str,
    force: bool,
    api_version: str,
    sub: str = "",
) -> dict:
    """The object after `manager` applies `applied` to `live` (None: it is created)."""
    if not manager:
        raise StoreError(
            400, "BadRequest", "PATCH, application/apply-patch+yaml requests require fieldManager"
        )
    base = copy.deepcopy(live) if live is not None else {}
    entries = _entries(base)
    new_set = field_set(applied)
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"), None
    )
    old_set = from_fields_v1(mine["fieldsV1"]) if mine else set()
    conflicts: list[tuple[str, str, Path]] = []
    for e in entries:
        if e is mine:
            continue
        theirs = from_fields_v1(e.get("fieldsV1") or {})
        for path in sorted(new_set & theirs):
            if path[-1] == ".":
                continue
            if _value_at(base, path) != _value_at(applied, path):
                conflicts.append((e["manager"], e.get("apiVersion", api_version), path))
    if conflicts and not force:
        raise conflict_error(conflicts)
    taken = {p for _, _, p in conflicts}
    others: set[Path] = set()
    for e in entries:
        if e is mine:
            continue
        theirs = from_fields_v1(e.get("fieldsV1") or {}) - taken
        e["fieldsV1"] = to_fields_v1(theirs)
        others |= theirs
    config = {k: v for k, v in applied.items() if k != "status"}
    if isinstance(config.get("metadata"), dict):  # e.g. creationTimestamp: null from kubectl
        config["metadata"] = {
            k: v for k, v in config["metadata"].items() if k not in _SERVER_FIELDS
        }
    result = merge(base, config)
    for path in sorted(old_set - new_set - others, key=len, reverse=True):
        item = path[:-1] if path[-1] == "." else None
        if item and any(o[: len(item)] == item for o in others | new_set):
            continue  # someone still owns a field inside this list item
        _remove(result, path)
    entries = [e for e in entries if e is not mine]
    entries.append(_entry(manager, "Apply", api_version, new_set, sub))
    _store_entries(result, entries)
    return result


def record_update(
    old: dict | None, new: dict, *, manager: str, api_version: str, sub: str = ""
) -> None:
    """An ordinary write by `manager`: it owns the fields it changed, in an Update entry."""
    if not manager:
        return
    before = field_set(old or {})
    after = field_set(new)
    changed = {p for p in after if p not in before or _value_at(old or {}, p) != _value_at(new, p)}
    entries = _entries(old or {})
    for e in entries:
        e["fieldsV1"] = to_fields_v1(from_fields_v1(e.get("fieldsV1") or {}) - changed)
    current = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Update"),
        None,
    )
    owned = (from_fields_v1(current["fieldsV1"]) if current else set()) | changed
    entries = [e for e in entries if e is not current]
    if owned:
        entries.append(_entry(manager, "Update", api_version, owned & after, sub))
    _store_entries(new, entries)
