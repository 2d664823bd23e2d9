"""The Kubernetes source: nodes, pods, Flux Kustomizations, DiskPools and events.

Read with five parallel list calls, or, once `start_watch` ran (the console does; the
one-shot `status` does not), from the watch cache while it is in sync: then a refresh
makes no list call at all and the timer is only a slow safety net.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from dapper.backends.model import Node, PodRef, SourceName
from dapper.backends.snapshot.join import POD_ORDER, KubeData, SnapshotParts
from dapper.backends.snapshot.reuse import Reuse
from dapper.backends.snapshot.sources import IMPORTS, SingleFlight, SourceContext

if TYPE_CHECKING:
    from dapper.backends.clients.kube import KubeBackend
    from dapper.backends.clients.kube_reader import KubeReader, RawKubeReader
    from dapper.backends.clients.kube_watch import KubeWatcher

log = logging.getLogger(__name__)

EVENTS_SHOWN = 200  # the newest events kept in a snapshot
_EVENT_TIME = attrgetter("time")
# A watched change shows within this long; sooner, a churning cluster (50 pod changes a
# second) would have the console re-joining the snapshot all the time.
WATCH_DEBOUNCE = 1.0
# A refresh while the watcher makes its first lists waits for them up to this many
# timeouts (within the collector's bound of two), then lists by itself.
FIRST_LIST_WAIT = 1.8


class KubernetesSource:
    name = SourceName.KUBERNETES
    interval = 2.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: KubeBackend | None = None
        self._lean: KubeReader | None = None
        self._lean_tried = False
        self._watcher: KubeWatcher | None = None
        self._flight = SingleFlight()
        self._nodes = NodeParses()

    def client(self) -> KubeBackend:
        """The Kubernetes client, built on first use (its import is the expensive part)."""
        with IMPORTS:
            if self._client is None:
                from dapper.backends.clients.kube import KubeBackend

                config = self.context.config
                self._client = KubeBackend.from_kubeconfig(
                    config.kubeconfig or None,
                    context=config.kube_context or None,
                    read_only=config.read_only,
                    timeout=self.context.timeout,
                )
            return self._client

    def reader(self) -> RawKubeReader:
        """What lists and watches go through: the lean GET-only reader when the kubeconfig
        allows it (no 1.7 s of client imports before the first snapshot), else the client."""
        with IMPORTS:
            if not self._lean_tried:
                from dapper.backends.clients.kube_reader import open_reader

                config = self.context.config
                self._lean = open_reader(
                    config.kubeconfig or None,
                    config.kube_context or None,
                    timeout=self.context.timeout,
                )
                self._lean_tried = True
        return self._lean or self.client()

    # -- watches ---------------------------------------------------------------------------

    @property
    def watcher(self) -> KubeWatcher | None:
        return self._watcher

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.healthy

    def start_watch(self, on_change: Callable[[], None], **options: Any) -> None:
        """Watch from now on (idempotent); `options` go to KubeWatcher (tests shorten its
        backoff). The client is built on the watcher's thread, not here."""
        if self._watcher is not None:
            return
        with IMPORTS:
            from dapper.backends.clients.kube_watch import KubeWatcher

        settings: dict[str, Any] = {"debounce": WATCH_DEBOUNCE, **options}
        self._watcher = KubeWatcher(self.reader, on_change=on_change, convert=ingest, **settings)
        self._watcher.start()

    # -- the source ------------------------------------------------------------------------

    def refresh_after(self) -> tuple[str, ...]:
        return ()

    async def fetch(self, *, fresh: bool = False) -> KubeData:
        return await self._flight.run(lambda: self._read(fresh))

    def _read(self, fresh: bool) -> KubeData:
        watcher = self._watcher
        cached = None
        timeout = self.context.timeout
        if watcher is not None and not watcher.healthy and not watcher.reason:
            # starting: its first lists are on the way, and listing beside them would
            # double the work (and the API server's) at the moment the console starts
            watcher.first_lists(FIRST_LIST_WAIT * timeout)
        if watcher is not None and watcher.healthy and (not fresh or watcher.sync(timeout)):
            cached = watcher.cache()
        if cached is not None:
            return kube_data(cached, self._nodes)  # parsed as each object arrived (ingest)
        if watcher is not None and watcher.reason:
            log.info("kubernetes watches not in sync (%s): listing", watcher.reason)
        from dapper.backends.clients.kube import WATCH_KINDS

        k = self.reader()
        # Five independent list calls: in parallel, the snapshot waits for the slowest only.
        # One connection, kinds in turn: a one-shot's lists are small and a TLS handshake
        # per parallel list cost more than the wait; a big cluster is served by watches.
        parsed: dict[str, list[Any]] = {}
        for kind in WATCH_KINDS:  # each page ingested as it arrives, then put in list order
            items, _rv = k.list_converted(kind, partial(_ordered_ingest, kind))
            parsed[kind] = [obj for _order, obj in sorted(items, key=itemgetter(0))]
        return kube_data(parsed, self._nodes)

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, KubeData)
        parts.kube = data

    async def close(self) -> None:
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.close)
        self._flight.cancel()
        if self._lean is not None:
            self._lean.close()
        if self._client is not None:
            self._client.close()


def ingest(kind: str, obj: dict) -> Any:
    """What the snapshot keeps of one object, parsed once when it arrives: a watch
    delivers one changed object at a time, and re-parsing 20,000 raw pods on every change
    was most of a refresh (and their raw JSON most of the console's memory). Nodes stay
    raw: they are parsed with their pods when the snapshot is made."""
    from dapper.backends.clients import kube_parse

    if kind == "pods":
        return kube_parse.pod_ref(obj)
    if kind == "kustomizations":
        return kube_parse.kustomization(obj)
    if kind == "diskpools":
        return kube_parse.disk_pool(obj)
    if kind == "events":
        return kube_parse.event(obj)
    return obj


class NodeParses:
    """Nodes parsed for the last snapshot, reused while their raw object and their pods
    are the same objects (see reuse.py): with 50 pod changes a second over 500 nodes,
    parsing every node at each refresh was 80 ms of CPU a second."""

    def __init__(self) -> None:
        self._reuse: Reuse[Node] = Reuse()

    def parse(self, objs: list[dict], by_node: dict[str, list[PodRef]]) -> list[Node]:
        out = []
        for o in objs:
            name = o["metadata"]["name"]
            pods = by_node.get(name, ())
            out.append(self._reuse.get(name, (o, *pods), partial(_node, o, pods)))
        self._reuse.done()
        return out


def _node(obj: dict, pods: Sequence[PodRef]) -> Node:
    """A node with its pods in the API's list order (namespace, name)."""
    from dapper.backends.clients import kube_parse

    return kube_parse.node(obj, tuple(sorted(pods, key=POD_ORDER)))


def kube_data(parsed: dict[str, list[Any]], memo: NodeParses | None = None) -> KubeData:
    """KubeData from each kind's ingested objects, listed or from the watch cache (in no
    set order: each node's pods are put in list order, the join orders the rest); `memo`
    reuses unchanged nodes."""
    pod_refs: list[PodRef] = parsed["pods"]
    by_node: defaultdict[str, list[PodRef]] = defaultdict(list)
    for p in pod_refs:  # 20,000 at scale: the cheapest grouping Python has
        by_node[p.node].append(p)
    nodes = (memo or NodeParses()).parse(parsed["nodes"], by_node)
    events = heapq.nlargest(EVENTS_SHOWN, parsed["events"], key=_EVENT_TIME)  # of thousands
    return KubeData(
        nodes=tuple(nodes),
        pods=tuple(pod_refs),
        kustomizations=tuple(parsed["kustomizations"]),
        pools=tuple(parsed["diskpools"]),
        events=tuple(events),
    )


def _ordered_ingest(kind: str, obj: dict) -> tuple[tuple[str, str], Any]:
    return _list_order(obj), ingest(kind, obj)


def _list_order(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
