"""Kubernetes watches against the lab over real sockets: the collector's cache follows
changes without list calls, re-lists after 410 Gone, falls back to lists while the API
is down, recovers, and leaves no thread behind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.kube_reader import KubeReader
from dapper.backends.model import Health
from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import RunningLab, start_lab
from dapper.lab.store import ObjectStore

from tests.waiting import eventually, eventually_async

NODE = "talos-node-large-1"
FAST = {"backoff": (0.05, 0.3), "debounce": 0.02}


@pytest.fixture
def lab() -> Iterator[RunningLab]:
    running = start_lab(flux=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def admin(lab: RunningLab) -> Iterator[KubeBackend]:
    """A second client, as another operator or a controller would change the cluster."""
    backend = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context="lab-admin")
    yield backend
    backend.close()


def watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("kube-watch")]


def count_lists(collector: Collector) -> list[str]:
    """Every list request the collector's reader makes from now on (watches excluded)."""
    reader = collector._sources["kubernetes"].reader()  # type: ignore[attr-defined]
    assert isinstance(reader, KubeReader), "the lab's kubeconfig is served by the lean reader"
    calls: list[str] = []
    inner = reader._json

    def counting(what: str, *args, **kwargs):
        if what.startswith("list "):
            calls.append(what)
        return inner(what, *args, **kwargs)

    reader._json = counting  # type: ignore[method-assign]
    return calls


async def watching(config, **options) -> Collector:
    collector = Collector(config, timeout=3.0)
    changes: list[str] = []
    collector.on_change(changes.append)
    collector.changes = changes  # type: ignore[attr-defined]
    collector.start_watches(**{**FAST, **options})
    await eventually_async(lambda: collector.watching("kubernetes"), message="the watches to sync")
    return collector


def pods(snapshot) -> list:
    return [p for n in snapshot.nodes for p in n.pods]


def node(snapshot, name: str):
    return next(n for n in snapshot.nodes if n.name == name)


async def test_cordon_and_delete_reach_the_snapshot_without_a_list(
    lab: RunningLab, admin: KubeBackend
) -> None:
    collector = await watching(lab.config)
    try:
        lists = count_lists(collector)
        first = await collector.refresh("kubernetes")
        assert not node(first, NODE).unschedulable and len(first.nodes) == 7
        victim = next(p for p in pods(first) if p.name.startswith("coredns-"))
        changes = len(collector.changes)  # type: ignore[attr-defined]

        admin.cordon(NODE)
        await eventually_async(
            lambda: len(collector.changes) > changes,  # type: ignore[attr-defined]
            message="a change notification",
        )
        await eventually_async(
            lambda: any(
                n["metadata"]["name"] == NODE and n["spec"].get("unschedulable")
                for n in collector.watcher.cache()["nodes"]
            ),
            message="the cordon in the watch cache",
        )
        snap = await collector.refresh("kubernetes")
        assert node(snap, NODE).unschedulable
        assert collector.interval("kubernetes") > 2.0  # the timer is only a safety net now

        from kubernetes import client

        client.CoreV1Api(admin._api).delete_namespaced_pod(victim.name, victim.namespace)
        await eventually_async(
            lambda: all(  # pods are kept parsed (PodRef), nodes raw
                p.name != victim.name for p in collector.watcher.cache()["pods"]
            ),
            message="the deleted pod to leave the cache",
        )
        snap = await collector.refresh("kubernetes")
        assert victim.name not in {p.name for p in pods(snap)}
        assert snap.source("kubernetes").health is Health.OK
        assert lists == [], "a healthy watch cache needs no list call"
        assert collector.watcher.lists == dict.fromkeys(collector.watcher.lists, 1)
    finally:
        await collector.close()
    assert watch_threads() == []


async def test_a_refresh_while_the_watches_make_their_first_lists_waits_for_them(
    lab: RunningLab,
) -> None:
    # At 20,000 pods the console's first refresh listed every kind beside the watcher's
    # own first lists: twice the work, for both sides, as the console starts.
    collector = Collector(lab.config, timeout=3.0)
    try:
        reader = collector._sources["kubernetes"].reader()  # type: ignore[attr-defined]
        assert isinstance(reader, KubeReader)
        own_lists: list[str] = []
        inner = reader._json

        def observed(what: str, *args, **kwargs):
            on_watch_thread = threading.current_thread().name.startswith("kube-watch")
            if what.startswith("list ") and not on_watch_thread:
                own_lists.append(what)
            if what.startswith("list pods") and on_watch_thread:
                threading.Event().wait(0.5)  # a big first page: the refresh comes meanwhile
            return inner(what, *args, **kwargs)

        reader._json = observed  # type: ignore[method-assign]
        collector.start_watches(**FAST)
        assert not collector.watching("kubernetes")
        snap = await collector.refresh("kubernetes")
        assert len(snap.nodes) == 7 and pods(snap)
        assert snap.source("kubernetes").health is Health.OK
        assert own_lists == []
        assert collector.watcher.lists == dict.fromkeys(collector.watcher.lists, 1)
    finally:
        await collector.close()
    assert watch_threads() == []


async def test_a_cut_stream_resumes_from_its_resource_version_without_a_list(
    lab: RunningLab, admin: KubeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A load balancer's restart or a server's idle close cuts every stream: as client-go's
    reflector, the watcher watches again from the last resourceVersion it saw. A re-list
    (20,000 pods at scale) and a fall back to list calls are for 410 Gone and an API that
    stays unreachable."""
    collector = await watching(lab.config)
    try:
        lists = count_lists(collector)
        (server,) = (s for s in lab.servers if type(s).__name__ == "KubeApiServer")
        listener = server._listener
        assert listener is not None
        with caplog.at_level(logging.WARNING, logger="dapper.backends.clients.kube.watch"):
            listener.drop_connections()
            admin.cordon(NODE)
            await eventually_async(
                lambda: any(
                    n["metadata"]["name"] == NODE and n["spec"].get("unschedulable")
                    for n in collector.watcher.cache()["nodes"]
                ),
                message="the cordon, through the resumed watch",
            )
        assert lists == [], "a resumed watch needs no list call"
        assert collector.watcher.lists == dict.fromkeys(collector.watcher.lists, 1)
        assert "failed" not in caplog.text and collector.watching("kubernetes")
    finally:
        await collector.close()
    assert watch_threads() == []


async def test_gone_resource_version_lists_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ObjectStore, "HISTORY", 20)  # the lab keeps 20 changes: "2" is long gone
    with start_lab(flux=False) as small:
        backend = KubeBackend.from_kubeconfig(small.config.kubeconfig, context="lab-admin")
        collector = await watching(small.config)
        try:
            assert collector.watcher.lists["nodes"] == 1
            with caplog.at_level(logging.INFO, logger="dapper.backends.clients.kube.watch"):
                collector.watcher.resume("nodes", "2")
                await eventually_async(
                    lambda: collector.watcher.lists["nodes"] == 2, message="a re-list"
                )
            assert "resourceVersion 2 is gone" in caplog.text
            assert collector.watcher.reason == ""
            backend.cordon(NODE)  # and the new watch follows changes again
            await eventually_async(
                lambda: any(
                    n["metadata"]["name"] == NODE and n["spec"].get("unschedulable")
                    for n in (collector.watcher.cache() or {}).get("nodes", [])
                ),
                message="the cordon after the re-list",
            )
        finally:
            backend.close()
            await collector.close()
    assert watch_threads() == []


async def test_api_down_falls_back_to_lists_then_recovers(lab: RunningLab) -> None:
    collector = await watching(lab.config)
    try:
        await collector.refresh("kubernetes")
        lists = count_lists(collector)
        changes = len(collector.changes)  # type: ignore[attr-defined]
        lab.world.inject("api-down:kubernetes")
        try:
            await eventually_async(
                lambda: not collector.watching("kubernetes"), message="the watches to fail"
            )
            await eventually_async(
                lambda: len(collector.changes) > changes,  # type: ignore[attr-defined]
                message="a health change notification",
            )
            assert collector.interval("kubernetes") == 2.0
            snap = await collector.refresh("kubernetes")
            kube = snap.source("kubernetes")
            assert kube.health is Health.DEGRADED and "connection refused" in kube.reason
            assert lists, "a watcher out of sync falls back to list calls"
            assert len(snap.nodes) == 7, "the last good data stays"
        finally:
            lab.world.clear("api-down:kubernetes")
        await eventually_async(
            lambda: collector.watching("kubernetes"), message="the watches to recover"
        )
        assert collector.watcher.reason == ""
        lists.clear()
        snap = await collector.refresh("kubernetes")
        assert snap.source("kubernetes").health is Health.OK and lists == []
    finally:
        await collector.close()
    assert watch_threads() == []


async def test_read_only_watches_and_one_shot_never_starts_them(lab: RunningLab) -> None:
    one_shot = Collector(lab.readonly_config, timeout=3.0)
    try:
        snap = await one_shot.refresh_all()
        assert snap.source("kubernetes").health is Health.OK
        assert one_shot.watcher is None and watch_threads() == []
    finally:
        await one_shot.close()
    collector = await watching(lab.readonly_config)  # watches are reads: allowed read-only
    try:
        assert collector.watcher.reason == ""
        assert len(watch_threads()) == 6  # five kinds and the notifier
    finally:
        await collector.close()
    assert watch_threads() == []


def test_close_cuts_open_streams_and_joins_threads(lab: RunningLab) -> None:
    from dapper.backends.clients.kube_watch import KubeWatcher

    backend = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context="lab-admin")
    changed = threading.Event()
    watcher = KubeWatcher(lambda: backend, on_change=changed.set, timeout_seconds=600)
    watcher.start()
    try:
        assert changed.wait(10)
        eventually(lambda: watcher.healthy, interval=0.05, message="the watcher to be healthy")
    finally:
        watcher.close(timeout=5)
        backend.close()
    assert watch_threads() == [] and not watcher.healthy


async def test_fresh_refresh_reads_its_own_writes_through_a_relist(
    lab: RunningLab, admin: KubeBackend
) -> None:
    collector = await watching(lab.config)
    try:
        await collector.refresh("kubernetes")
        before = dict(collector.watcher.lists)
        admin.cordon(NODE)
        snap = await collector.refresh("kubernetes", fresh=True)  # no waiting for the watch
        assert node(snap, NODE).unschedulable
        assert collector.watcher.lists == {k: n + 1 for k, n in before.items()}
        assert collector.watching("kubernetes") and collector.watcher.reason == ""
        admin.uncordon(NODE)  # and the restarted watches follow changes again
        await eventually_async(
            lambda: (
                not any(
                    n["metadata"]["name"] == NODE and n["spec"].get("unschedulable")
                    for n in collector.watcher.cache()["nodes"]
                )
            ),
            message="the uncordon after the re-list",
        )
    finally:
        await collector.close()
    assert watch_threads() == []
