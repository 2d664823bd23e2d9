"""Label and field selectors as the Kubernetes API server parses them.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined
(all must hold). Field selectors: `path=v`, `path==v`, `path!=v` over a small set of
dotted paths per kind, as the real server supports only indexed fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dapper.lab.store import StoreError

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_CMP_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")

Predicate = Callable[[dict[str, str]], bool]


def _split_top(expr: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def _bad(kind: str, expr: str) -> StoreError:
    return StoreError(400, "BadRequest", f"unable to parse requirement: invalid {kind}: {expr!r}")


def parse_label_selector(expr: str) -> Predicate:
    """A predicate over an object's labels; raises StoreError(400) on a malformed selector."""
    reqs: list[Predicate] = []
    for part in _split_top(expr or ""):
        m = _CMP_RE.match(part)
        if m:
            key, op, val = m.groups()
            if op == "!=":
                reqs.append(lambda lb, k=key, v=val: lb.get(k) != v)
            else:
                reqs.append(lambda lb, k=key, v=val: lb.get(k) == v)
            continue
        m = _SET_RE.match(part)
        if not m:
            raise _bad("label selector", part)
        neg, key, op, values = m.groups()
        if neg and op:
            raise _bad("label selector", part)
        if op:
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            if op == "in":
                reqs.append(lambda lb, k=key, vs=vals: lb.get(k) in vs)
            else:
                reqs.append(lambda lb, k=key, vs=vals: lb.get(k) not in vs)
        elif neg:
            reqs.append(lambda lb, k=key: k not in lb)
        else:
            reqs.append(lambda lb, k=key: k in lb)
    return lambda labels: all(r(labels) for r in reqs)


def match_label_selector_object(selector: dict | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector ({matchLabels, matchExpressions}) against labels.
    An empty selector matches everything (policy/v1 PDB semantics)."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# Field paths each kind supports (metadata.name / metadata.namespace everywhere).
_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "status.phase",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Node": ("spec.unschedulable",),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
}


@dataclass(frozen=True)
class _FieldReq:
    path: str
    value: str
    negate: bool


def _lookup(obj: dict, path: str) -> str:
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict) and path == "source":
        return str(cur.get("component", ""))
    return str(cur)


def parse_field_selector(expr: str, kind: str) -> Callable[[dict], bool]:
    """A predicate over whole objects; unknown fields get the real server's 400."""
    reqs: list[_FieldReq] = []
    allowed = ("metadata.name", "metadata.namespace", *_FIELDS.get(kind, ()))
    for part in _split_top(expr or ""):
        m = _CMP_RE.match(part)
        if not m:
            raise _bad("field selector", part)
        path, op, val = m.groups()
        if path not in allowed:
            raise StoreError(
                400,
                "BadRequest",
                f"field label not supported: {path}",
            )
        reqs.append(_FieldReq(path, val, op == "!="))
    return lambda obj: all((_lookup(obj, r.path) == r.value) != r.negate for r in reqs)
