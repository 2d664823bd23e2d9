"""Apply-if-changed for the Flux twin: a re-apply of identical objects writes nothing.

The store's upsert always writes (it replaces metadata, so resourceVersion moves), which
would give every watcher (the console, kubectl) a MODIFIED event for every object on
every reconcile. Real server-side apply of an unchanged manifest is a no-op; this makes
the twin's re-applies behave the same.
"""

from __future__ import annotations

from typing import Any

from dapper.lab.kinds import ResourceType
from dapper.lab.store import ObjectStore

_SERVER_FIELDS = frozenset({"status", "metadata", "apiVersion", "kind"})


def unchanged(live: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Would applying `obj` leave `live` as it is? (status is not the applier's)."""
    for key, value in obj.items():
        if key == "status":
            continue
        if key == "metadata":
            live_meta = live.get("metadata") or {}
            if any(live_meta.get(k) != v for k, v in value.items() if k != "resourceVersion"):
                return False
        elif live.get(key) != value:
            return False
    return not (set(live) - set(obj) - _SERVER_FIELDS)


def upsert_if_changed(store: ObjectStore, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The live object after applying `obj`; no write when nothing would change."""
    meta = obj.get("metadata") or {}
    live = store.find(rt, meta.get("namespace", "") if rt.namespaced else "", meta.get("name", ""))
    if live is not None and unchanged(live, obj):
        return live
    return store.upsert(obj, rt=rt)
