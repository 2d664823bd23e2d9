"""The lab's Kubernetes object store: versioned objects, selectors' raw material, watches.

Objects are plain JSON-shaped dicts, stored by (group, plural, namespace, name). Every
change bumps one cluster-wide resourceVersion and is appended to a bounded history, so a
watch can start from any recent resourceVersion (older ones get 410 Gone, like etcd
compaction). Thread-safe: the HTTP server, the Flux twin and the world all write here.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dapper.lab.kinds import ResourceType, by_kind, split_api_version

Key = tuple[str, str, str, str]  # group, plural, namespace, name


class StoreError(Exception):
    """A request the API server answers with a Status; `code` is the HTTP status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class NotFound(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(404, "NotFound", f"{what} not found")


class AlreadyExists(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(409, "AlreadyExists", f"{what} already exists")


class Conflict(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(
            409,
            "Conflict",
            f"Operation cannot be fulfilled on {what}: the object has been modified; "
            "please apply your changes to the latest version and try again",
        )


class Gone(StoreError):
    def __init__(self, rv: int) -> None:
        super().__init__(410, "Expired", f"too old resource version: {rv}")


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    key: Key
    obj: dict


_ATOMIC = (str, int, float, bool, type(None))


def clone(node: object) -> object:
    """Deep copy of JSON-shaped data, several times faster than copy.deepcopy (no memo:
    the store's objects are trees); anything unusual still goes through deepcopy."""
    kind = type(node)
    if kind is dict:
        return {k: clone(v) for k, v in node.items()}  # type: ignore[attr-defined]
    if kind is list:
        return [clone(v) for v in node]  # type: ignore[attr-defined]
    if kind in _ATOMIC or isinstance(node, str):
        return node
    return copy.deepcopy(node)


def now_rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def _what(rt: ResourceType, ns: str, name: str) -> str:
    plural = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
    return f'{plural} "{name}"'


class ObjectStore:
    """All Kubernetes objects of the lab, with resourceVersions and watch history."""

    HISTORY = 20_000

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._objects: dict[Key, dict] = {}
        # (group, plural) -> {namespace: {name: object}}: a list reads one type (and one
        # namespace), not all; at 20,000 pods a namespace's list scanned them all
        self._by_type: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
        self._rv = 1
        self._history: deque[WatchEvent] = deque(maxlen=self.HISTORY)
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self._defaulters: list[Callable[[ResourceType, dict, bool], None]] = []
        self.closed = False

    # -- reading -----------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """Held across a read-decide-write that must see no other write in between."""
        return self._lock  # type: ignore[return-value]

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def get(self, rt: ResourceType, ns: str, name: str, *, copy: bool = True) -> dict:
        """The object; with copy=False the store's own, which the caller must not change
        (stored objects are never changed in place, so it stays a consistent version)."""
        with self._lock:
            obj = self._objects.get((rt.group, rt.plural, ns if rt.namespaced else "", name))
            if obj is None:
                raise NotFound(_what(rt, ns, name))
            return clone(obj) if copy else obj  # type: ignore[return-value]

    def find(self, rt: ResourceType, ns: str, name: str, *, copy: bool = True) -> dict | None:
        try:
            return self.get(rt, ns, name, copy=copy)
        except NotFound:
            return None

    def list(
        self, rt: ResourceType, ns: str | None = None, *, copy: bool = True
    ) -> tuple[list[dict], int]:
        """Objects of a type (in one namespace, or all) and the list's resourceVersion;
        with copy=False the store's own objects (read-only, as for get)."""
        with self._lock:
            of_type = self._by_type.get((rt.group, rt.plural), {})
            if ns:
                in_ns = of_type.get(ns, {})
                items = [in_ns[name] for name in sorted(in_ns)]
            else:
                items = []
                for where in sorted(of_type):
                    of_ns = of_type[where]
                    items.extend(of_ns[name] for name in sorted(of_ns))
            if copy:
                items = [clone(o) for o in items]  # type: ignore[misc]
            return items, self._rv

    def kinds_of(self, obj: dict) -> ResourceType:
        group, _ = split_api_version(obj.get("apiVersion", ""))
        return by_kind(group, obj.get("kind", ""))

    # -- writing -----------------------------------------------------------------------

    def add_defaulter(self, fn: Callable[[ResourceType, dict, bool], None]) -> None:
        """`fn(rt, obj, created)` fills in what the API server and kubelet would before a
        write is stored, as admission defaulting does; it runs under the lock and may
        replace top-level parts of `obj` but must not change what they point to in place
        (an update shares unchanged parts with the stored version)."""
        with self._lock:
            self._defaulters.append(fn)

    def _default(self, rt: ResourceType, obj: dict, created: bool) -> None:
        for fn in self._defaulters:
            fn(rt, obj, created)

    def _commit(self, type_: str, key: Key, obj: dict, dry_run: bool = False) -> dict:
        if dry_run:  # dryRun=All: the answer the write would get, nothing stored or watched
            return clone(obj)  # type: ignore[return-value]
        self._rv += 1
        of_ns = self._by_type.setdefault(key[:2], {}).setdefault(key[2], {})
        if type_ != "DELETED":
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key] = obj
            of_ns[key[3]] = obj
        else:
            obj = clone(obj)  # type: ignore[assignment]
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects.pop(key, None)
            of_ns.pop(key[3], None)
        event = WatchEvent(type_, self._rv, key, clone(obj))  # type: ignore[arg-type]
        self._history.append(event)
        self._changed.notify_all()
        for listener in list(self._listeners):
            listener(event)
        return clone(obj)  # type: ignore[return-value]

    def create(self, obj: dict, *, rt: ResourceType | None = None, dry_run: bool = False) -> dict:
        rt = rt or self.kinds_of(obj)
        obj = clone(obj)  # type: ignore[assignment]
        meta = obj.setdefault("metadata", {})
        ns = meta.get("namespace", "") if rt.namespaced else ""
        if rt.namespaced and not ns:
            raise StoreError(400, "BadRequest", "the namespace of the object is required")
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise StoreError(400, "Invalid", "metadata.name: Required value")
        if not rt.namespaced:
            meta.pop("namespace", None)
        key = (rt.group, rt.plural, ns, meta["name"])
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(_what(rt, ns, meta["name"]))
            obj.setdefault("apiVersion", rt.api_version)
            obj.setdefault("kind", rt.kind)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = meta.get("creationTimestamp") or now_rfc3339()
            meta["generation"] = 1
            self._default(rt, obj, True)
            return self._commit("ADDED", key, obj, dry_run)

    def replace(
        self,
        obj: dict,
        *,
        rt: ResourceType | None = None,
        status_only: bool = False,
        check_rv: bool = True,
        dry_run: bool = False,
    ) -> dict:
        """Update (PUT). With status_only, only .status changes (the status subresource);
        otherwise .status is kept as stored, as the real API server does for CRDs with status."""
        rt = rt or self.kinds_of(obj)
        meta = obj.get("metadata", {})
        ns = meta.get("namespace", "") if rt.namespaced else ""
        key = (rt.group, rt.plural, ns, meta.get("name", ""))
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise NotFound(_what(rt, ns, meta.get("name", "")))
            sent_rv = meta.get("resourceVersion")
            if check_rv and sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise Conflict(_what(rt, ns, key[3]))
            if status_only:
                new = dict(old)  # shares the stored parts; only .status is replaced
                new["metadata"] = dict(old["metadata"])
                if "status" in obj:
                    new["status"] = clone(obj["status"])
            else:
                status = old.get("status")
                new = clone(obj)  # type: ignore[assignment]
                for k in ("uid", "creationTimestamp", "generation"):
                    if k in old["metadata"]:
                        new["metadata"][k] = old["metadata"][k]
                keep_status = rt.kind not in ("Node", "Pod") or "status" not in new
                if status is not None and keep_status:
                    new["status"] = status
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
                new.setdefault("apiVersion", old.get("apiVersion", rt.api_version))
                new.setdefault("kind", rt.kind)
                if not rt.namespaced:
                    new["metadata"].pop("namespace", None)
                else:
                    new["metadata"]["namespace"] = ns
            self._default(rt, new, False)
            # an identical write is no change: no event, no new resourceVersion
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return clone(old)  # type: ignore[return-value]
            return self._commit("MODIFIED", key, new, dry_run)

    def mutate(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        fn: Callable[[dict], None],
        *,
        status_only: bool = False,
        dry_run: bool = False,
    ) -> dict:
        """Read-modify-write under the lock: `fn` edits a copy in place."""
        with self._lock:
            obj = self.get(rt, ns, name)
            fn(obj)
            obj["metadata"].pop("resourceVersion", None)
            return self.replace(
                obj, rt=rt, status_only=status_only, check_rv=False, dry_run=dry_run
            )

    def upsert(self, obj: dict, *, rt: ResourceType | None = None) -> dict:
        """Create, or replace spec/metadata keeping status (what `apply` means to the lab).
        Re-applying what is stored writes nothing, as server-side apply of an unchanged
        manifest does."""
        rt = rt or self.kinds_of(obj)
        with self._lock:
            meta = obj.get("metadata", {})
            existing = self.find(rt, meta.get("namespace", ""), meta.get("name", ""), copy=False)
            if existing is None:
                return self.create(obj, rt=rt)
            merged = dict(obj)  # replace() copies it; only the top level is changed here
            merged["metadata"] = {
                k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"
            }
            if "status" in existing and "status" not in merged:
                merged["status"] = existing["status"]
            return self.replace(merged, rt=rt, check_rv=False)

    def delete(self, rt: ResourceType, ns: str, name: str, *, dry_run: bool = False) -> dict:
        key = (rt.group, rt.plural, ns if rt.namespaced else "", name)
        with self._lock:
            obj = self._objects.get(key)
            if obj is None:
                raise NotFound(_what(rt, ns, name))
            return self._commit("DELETED", key, obj, dry_run)

    # -- watching ----------------------------------------------------------------------

    def add_listener(self, fn: Callable[[WatchEvent], None]) -> None:
        """Called under the store lock for every change; keep it quick, never block."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[WatchEvent], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def events_since(
        self,
        rt: ResourceType,
        ns: str | None,
        since_rv: int,
        *,
        timeout: float,
        stop: threading.Event | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield the type's events after `since_rv`, waiting up to `timeout` for new ones."""
        deadline = time.monotonic() + timeout
        seen = since_rv  # every event up to here has been looked at
        with self._lock:
            if self._history and since_rv and since_rv < self._history[0].rv - 1:
                raise Gone(since_rv)
        while True:
            with self._lock:
                newer = self._events_after(seen)
                seen = self._rv
                batch = [
                    e
                    for e in newer
                    if e.key[0] == rt.group and e.key[1] == rt.plural and (not ns or e.key[2] == ns)
                ]
                if not batch:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed or (stop is not None and stop.is_set()):
                        return
                    self._changed.wait(min(remaining, 0.5))
                    continue
            yield from batch

    def _events_after(self, rv: int) -> list[WatchEvent]:
        """The history's events newer than `rv`, oldest first. Walked from the newest end
        (the history is in resourceVersion order): a watcher reads only what is new, where
        scanning all 20,000 events on every wake was most of a busy lab's CPU."""
        newer = []
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            newer.append(event)
        newer.reverse()
        return newer

    def wake(self) -> None:
        """Wake every watcher now, so one whose `stop` event was set returns at once."""
        with self._lock:
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every watcher so servers can stop promptly."""
        with self._lock:
            self.closed = True
            self._changed.notify_all()
