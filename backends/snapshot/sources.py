"""What a source of the snapshot is: one typed Protocol, its names, and its fetch helpers.

A source is one class (`kubernetes_source.KubernetesSource`, ...) registered once in
`registry.py`; the collector builds one of each per collector, refreshes it on its own
interval with a timeout, records its health, and hands its latest data to the join
through the source's own `feed`. Nothing outside the source's module knows its client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from dapper.backends.config import Config
from dapper.backends.snapshot.join import SnapshotParts

T = TypeVar("T")

# Client libraries are imported on first use, from worker threads; two threads importing
# requests/urllib3 at once can see a half-initialised module, so imports take turns.
IMPORTS = threading.Lock()


@dataclass(frozen=True)
class SourceContext:
    """What a source is built with: the configuration, the per-call timeout, and a read-only
    view of the other sources' latest data (Talos asks Kubernetes which nodes exist)."""

    config: Config
    timeout: float
    latest: Callable[[str], object | None]
    talos_nodes: tuple[str, ...] | None = None


class Source(Protocol):
    """One system the snapshot is built from.

    To add a source (Alertmanager alerts, dcgm GPU telemetry, node logs, ...): write one
    class with these members in its own module under backends/snapshot/ and add it to
    `registry.BUILTIN` (a test may `REGISTRY.register` one for a while). Nothing else
    changes: the collector refreshes it every `interval` seconds, records its health
    ("degraded" with the one-line reason of the exception `fetch` raised, the last good
    data kept), lists it in `source_names`, the snapshot's `sources` and `status --json`.

    - `name`: the operator's name of the source (a `SourceName` for built-ins); it keys
      health, data and `refresh(name)`.
    - `interval`: seconds between refreshes when nothing watches it.
    - `fetch(fresh=)`: read the system once and return this source's data (an immutable
      value: the join may run any time). It must raise on failure (a `BackendError` gives
      its `reason` verbatim); the collector cancels it after twice `context.timeout`, so
      blocking client calls go through `SingleFlight` (threads cannot be cancelled).
      `fresh` asks a watched source to read the API rather than its cache.
    - `feed(parts, data)`: put `data` where the join expects it: the cross-system inputs
      (`parts.kube`, ...) or, for a source that only reports, `parts.faults` (alerts
      become faults; telemetry would enrich `parts` the same way once model.py has a field).
    - `refresh_after()`: sources whose data `fetch` reads and which `refresh_all` refreshes
      first (Talos after Kubernetes when the talosconfig names no nodes).
    - `close()`: release clients and cancel work; called once when the collector closes.

    Optional: `WatchableSource` (push updates: Kubernetes watches; an alert stream or a
    log tail would be one too).
    """

    @property
    def name(self) -> str: ...

    @property
    def interval(self) -> float: ...

    async def fetch(self, *, fresh: bool = False) -> object: ...

    def feed(self, parts: SnapshotParts, data: object) -> None: ...

    def refresh_after(self) -> tuple[str, ...]: ...

    async def close(self) -> None: ...


@runtime_checkable
class WatchableSource(Source, Protocol):
    """A source that can also be watched: `start_watch` begins pushing (idempotent; from a
    worker thread, so it may block briefly), `on_change()` runs on a watcher thread after
    each change, and `watching` says whether the watch serves the data right now (then the
    collector re-reads it only every `WATCHED_INTERVAL` as a safety net)."""

    def start_watch(self, on_change: Callable[[], None], **options: Any) -> None: ...

    @property
    def watching(self) -> bool: ...


SourceFactory = Callable[[SourceContext], Source]


class SingleFlight:
    """Runs a blocking fetch in a thread, never two at once: a thread cannot be cancelled,
    so a timed-out fetch is remembered and the next call waits for it instead of piling up."""

    def __init__(self) -> None:
        self._future: asyncio.Future[Any] | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        future = self._future
        if future is None or future.done():
            future = asyncio.ensure_future(asyncio.to_thread(fn))
            self._future = future
        result: T = await asyncio.shield(future)
        return result

    def cancel(self) -> None:
        if self._future is not None:
            self._future.cancel()


def feed_all(sources: Mapping[str, Source], data: Mapping[str, object]) -> SnapshotParts:
    """The join's inputs: each source's latest data, put in place by its own `feed`."""
    parts = SnapshotParts()
    for name, source in sources.items():
        if name in data:
            source.feed(parts, data[name])
    return parts
