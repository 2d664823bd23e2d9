"""Keep the snapshot's Kubernetes objects current with watches instead of polling.

Each kind (nodes, pods, Flux Kustomizations, DiskPools, events) is listed once as raw
JSON, then watched from the list's resourceVersion on its own thread, and every
ADDED/MODIFIED/DELETED is applied to an in-memory cache of raw objects. A stream the
server ends (timeoutSeconds) or cuts is resumed from the last resourceVersion seen, and
so is the first failed reopen after it (a kept-alive connection the server had closed);
410 Gone re-lists at once; any other failure (a refused connection, a reopen that fails
again) marks the watcher unhealthy with a one-line reason and re-lists after a growing
backoff.

While every kind is in sync the collector reads the cache and makes no list call at all;
`on_change` is called, at most every `debounce` seconds, when data or health changed,
so the console can refresh at once instead of waiting for its timer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dapper.backends.clients.kube import WATCH_KINDS
from dapper.backends.errors import BackendError
from dapper.backends.safe_text import clean_json

log = logging.getLogger("dapper.backends.clients.kube.watch")

Key = tuple[str, str]  # (namespace, name)


class _Gone(Exception):
    """The server no longer has the resourceVersion we asked for (410): list again."""


@dataclass
class _Kind:
    name: str
    objects: dict[Key, Any] = field(default_factory=dict)  # as `convert` made them
    rv: str = ""
    synced: bool = False
    error: str = ""
    last_ok: float | None = None
    lists: int = 0
    stream: Any = None  # the open watch response, so close() can cut it
    cut: bool = False  # sync() or resume() cut the stream on purpose: not a failure
    resume_rv: str | None = None
    opens: int = 0  # streams the server accepted: one that was open and got cut resumes
    relist_wanted: int = 0  # sync() asks for a re-list by raising this ...
    relist_done: int = 0  # ... and waits until a list begun after the ask raised this
    thread: threading.Thread | None = None


def _raw(kind: str, obj: dict) -> Any:
    return obj


def _key(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _lines(resp: Any) -> Iterator[bytes]:
    """The JSON lines of a watch response, as they arrive (chunks need not end lines)."""
    rest = b""
    for segment in resp.stream(amt=None, decode_content=False):
        parts = (rest + segment).split(b"\n")
        rest = parts.pop()
        yield from (p for p in parts if p.strip())
    if rest.strip():
        yield rest


def _abort(resp: Any) -> None:
    """Cut a watch stream from another thread: its blocked read returns at once."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _release(resp: Any, clean: bool) -> None:
    with contextlib.suppress(Exception):
        if not clean:
            resp.close()  # a half-read stream cannot go back into the pool
        resp.release_conn()


class KubeWatcher:
    """Watches WATCH_KINDS through the KubeBackend that `backend()` returns (built on
    first use, on a watcher thread). Thread-safe; start() once, close() once."""

    def __init__(
        self,
        backend: Callable[[], Any],
        *,
        on_change: Callable[[], None] | None = None,
        kinds: tuple[str, ...] = WATCH_KINDS,
        timeout_seconds: int = 60,
        debounce: float = 0.1,
        backoff: tuple[float, float] = (0.2, 10.0),
        clock: Callable[[], float] = time.time,
        convert: Callable[[str, dict], Any] = _raw,
    ) -> None:
        self._backend = backend
        self._convert = convert  # (kind, raw object) -> what the cache keeps of it
        self._on_change = on_change
        self.timeout_seconds = timeout_seconds
        self.debounce = debounce
        self.backoff = backoff
        self.clock = clock
        self._kinds = {k: _Kind(k) for k in kinds}
        self._lock = threading.Lock()
        self._listed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._dirty = threading.Event()
        self._notifier: threading.Thread | None = None
        self._started = False

    # -- state, read by the collector ------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Every kind listed and its watch running (or resuming): the cache is current."""
        with self._lock:
            return (
                self._started
                and not self._stop.is_set()
                and all(k.synced for k in self._kinds.values())
            )

    @property
    def reason(self) -> str:
        """Why the watcher is not healthy, one line ("" when it is, or is still starting)."""
        with self._lock:
            return next((f"{k.name}: {k.error}" for k in self._kinds.values() if k.error), "")

    @property
    def last_success(self) -> float | None:
        """The oldest of the kinds' last good list or watch (None until each had one)."""
        with self._lock:
            times = [k.last_ok for k in self._kinds.values()]
        return None if any(t is None for t in times) else min(times)  # type: ignore[type-var]

    @property
    def lists(self) -> dict[str, int]:
        """List calls made per kind (the first, and each re-list)."""
        with self._lock:
            return {k.name: k.lists for k in self._kinds.values()}

    def cache(self) -> dict[str, list[Any]] | None:
        """Each kind's objects (as `convert` made them) read at one moment, in the order
        they arrived: an unchanged object keeps its place and is the same object at every
        read (callers reuse what they built from it). None unless every kind is in sync.
        Not sorted: sorting 20,000 pods at each read was 60 ms of CPU, and callers order
        the few they show. The objects are shared: callers must not change them."""
        with self._lock:
            if not all(k.synced for k in self._kinds.values()):
                return None
            return {k.name: list(k.objects.values()) for k in self._kinds.values()}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        for kind in self._kinds.values():
            kind.thread = threading.Thread(
                target=self._run, args=(kind,), name=f"kube-watch-{kind.name}", daemon=True
            )
            kind.thread.start()
        self._notifier = threading.Thread(
            target=self._notify_loop, name="kube-watch-notify", daemon=True
        )
        self._notifier.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every thread: streams are cut, waits end; joined within `timeout`."""
        self._stop.set()
        self._dirty.set()
        with self._lock:
            self._listed.notify_all()
            for kind in self._kinds.values():
                if kind.stream is not None:
                    _abort(kind.stream)
        deadline = time.monotonic() + timeout
        threads = [k.thread for k in self._kinds.values()] + [self._notifier]
        for t in threads:
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t is not None and t.is_alive()]
        if stuck:
            log.warning("kube watch threads did not end: %s", ", ".join(stuck))

    def first_lists(self, timeout: float) -> bool:
        """Wait for every kind's first list while the watcher is starting, so a reader
        does not list the same 20,000 pods beside it. True once the cache can serve;
        False when a kind failed, the watcher is closing, or `timeout` passed."""

        def settled() -> bool:
            kinds = self._kinds.values()
            return (
                self._stop.is_set() or any(k.error for k in kinds) or all(k.synced for k in kinds)
            )

        with self._lock:
            if not self._started:
                return False
            self._listed.wait_for(settled, timeout)
            return not self._stop.is_set() and all(k.synced for k in self._kinds.values())

    def sync(self, timeout: float) -> bool:
        """List every kind again now and return once the cache holds those lists, so what
        was written before the call is in it (an explicit refresh reads its own writes).
        False when that took longer than `timeout` or the watcher is closing."""
        with self._lock:
            wanted: dict[str, int] = {}
            for k in self._kinds.values():
                if not k.rv:
                    continue  # not served: nothing to list
                k.relist_wanted += 1
                wanted[k.name] = k.relist_wanted
                if k.stream is not None:
                    k.cut = True
                    _abort(k.stream)
            return (
                self._listed.wait_for(
                    lambda: (
                        self._stop.is_set()
                        or all(self._kinds[n].relist_done >= w for n, w in wanted.items())
                    ),
                    timeout,
                )
                and not self._stop.is_set()
            )

    def resume(self, kind: str, resource_version: str) -> None:
        """Watch `kind` again from `resource_version`, as after a reconnect. A version the
        server has compacted away gets 410 Gone, and the watcher lists again."""
        with self._lock:
            k = self._kinds[kind]
            k.resume_rv = resource_version
            if k.stream is not None:
                k.cut = True
                _abort(k.stream)

    # -- the per-kind loop -------------------------------------------------------------------

    def _run(self, kind: _Kind) -> None:
        delay = self.backoff[0]
        relist = True
        gone_streak = 0
        reopen_failures = 0  # failed attempts to open a stream since one was open
        while not self._stop.is_set():
            watching = False
            try:
                backend = self._backend()
                if relist or kind.relist_wanted > kind.relist_done:
                    self._list(backend, kind)
                    relist = False
                if not kind.rv:  # not served (a cluster without Mayastor): look again later
                    relist = True
                    self._stop.wait(self.timeout_seconds)
                    continue
                watching, opens = True, kind.opens
                self._watch(backend, kind)
                delay, gone_streak, reopen_failures = self.backoff[0], 0, 0
            except _Gone as gone:
                log.info("watch %s: resourceVersion %s is gone; listing again", kind.name, gone)
                relist = True
                gone_streak += 1
                if gone_streak > 1:  # a server that keeps saying Gone gets the backoff too
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
            except Exception as exc:
                if self._stop.is_set():
                    break
                with self._lock:
                    cut, kind.cut = kind.cut, False
                if cut:
                    continue  # resume() or sync() cut the stream on purpose
                was_open = watching and kind.opens > opens
                if watching and self._resumable(kind, exc, was_open, reopen_failures):
                    reopen_failures = 0 if was_open else reopen_failures + 1
                    continue
                self._failed(kind, exc)
                relist = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff[1])

    def _resumable(self, kind: _Kind, exc: Exception, was_open: bool, reopen_failures: int) -> bool:
        """Whether a watch that failed is watched again from its resourceVersion at once,
        as client-go's reflector does, rather than counted a failure (which lists again and
        serves refreshes by list calls meanwhile): a stream that was open and got cut (a
        proxy's or the server's restart), or the first reopen that failed (a kept-alive
        connection the server had closed). Anything else is a failure."""
        if not (was_open or reopen_failures == 0):
            return False
        log.info("watch %s: stream cut (%s); watching again from %s", kind.name, exc, kind.rv)
        if was_open:
            self._stop.wait(self.backoff[0])  # a server that accepts and cuts: not a spin
        return True

    def _list(self, backend: Any, kind: _Kind) -> None:
        with self._lock:
            asked = kind.relist_wanted
        convert, name = self._convert, kind.name
        items, rv = backend.list_converted(name, lambda o: (_key(o), convert(name, o)))
        objects = dict(items)
        with self._lock:
            kind.objects, kind.rv = objects, rv
            kind.synced, kind.error = True, ""
            kind.last_ok = self.clock()
            kind.lists += 1
            kind.resume_rv = None
            kind.relist_done = asked
            self._listed.notify_all()
        self._dirty.set()

    def _watch(self, backend: Any, kind: _Kind) -> None:
        """One stream, until the server ends it (returns) or it fails (raises)."""
        with self._lock:
            rv = kind.resume_rv or kind.rv
            kind.resume_rv = None
        try:
            resp = backend.watch_raw(kind.name, rv, self.timeout_seconds)
        except BackendError as err:
            if err.code == "HTTP_410":  # some servers refuse the stream itself with 410
                raise _Gone(rv) from None
            raise
        if resp is None:
            with self._lock:
                kind.rv = ""
            return
        with self._lock:
            superseded = kind.resume_rv is not None  # resume() came while it was opening
            if not superseded:
                kind.stream, kind.cut = resp, False
                kind.opens += 1
                kind.last_ok = self.clock()
        if superseded:
            _release(resp, False)
            return
        clean = False
        try:
            if self._stop.is_set():
                return
            for line in _lines(resp):
                self._apply(kind, json.loads(clean_json(line)))
            clean = True
        except _Gone:
            raise _Gone(rv) from None
        except BackendError:
            raise
        except Exception as exc:
            from dapper.backends.clients.kube_errors import from_exception

            raise from_exception(exc, f"watch {kind.name}", getattr(backend, "server", "")) from exc
        finally:
            with self._lock:
                kind.stream = None
            _release(resp, clean)
        with self._lock:
            kind.last_ok = self.clock()

    def _apply(self, kind: _Kind, event: dict) -> None:
        type_ = event.get("type")
        obj = event.get("object") or {}
        if type_ == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone()
            message = obj.get("message") or obj.get("reason") or "error"
            raise BackendError(f"watch {kind.name}: HTTP {code} {message}", code=f"HTTP_{code}")
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        stored = self._convert(kind.name, obj) if type_ in ("ADDED", "MODIFIED") else None
        with self._lock:
            if rv:
                kind.rv = rv
            if type_ in ("ADDED", "MODIFIED"):
                kind.objects[_key(obj)] = stored
            elif type_ == "DELETED":
                kind.objects.pop(_key(obj), None)
            else:  # BOOKMARK: only the resourceVersion moves
                return
        self._dirty.set()

    def _failed(self, kind: _Kind, exc: Exception) -> None:
        if isinstance(exc, BackendError):
            reason = exc.reason
        else:  # the backend's own calls map their errors; this is for anything else
            from dapper.backends.clients.kube_errors import from_exception

            reason = from_exception(exc, f"watch {kind.name}").reason
        log.warning("watch %s failed: %s", kind.name, reason)
        log.debug("watch %s failure", kind.name, exc_info=exc)
        with self._lock:
            changed = kind.synced or kind.error != reason
            kind.synced, kind.error = False, reason
            self._listed.notify_all()  # first_lists() stops waiting for it
        if changed:
            self._dirty.set()

    # -- debounced change notification -------------------------------------------------------

    def _notify_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.wait(self.debounce):  # let a burst of events gather
                break
            self._dirty.clear()
            if self._on_change is None:
                continue
            try:
                self._on_change()
            except Exception:  # the listener's failure must not end the watches
                log.exception("kube watch change callback failed")
