"""A source is one class: a throwaway one registers, refreshes, degrades and is reported
with no edit to the collector; the built-ins satisfy the Protocol the collector uses."""

from __future__ import annotations

import asyncio
import json

import pytest
from dapper.backends.config import Config
from dapper.backends.errors import BackendError
from dapper.backends.model import Fault, Health, SourceName
from dapper.backends.protocols import SnapshotFeed
from dapper.backends.snapshot.collector import SOURCES, Collector
from dapper.backends.snapshot.join import SnapshotParts
from dapper.backends.snapshot.registry import REGISTRY, SourceRegistry
from dapper.backends.snapshot.snapshot_json import snapshot_to_json
from dapper.backends.snapshot.sources import (
    Source,
    SourceContext,
    WatchableSource,
)


class Alerts:
    """A throwaway source shaped like the coming Alertmanager one: its data are faults."""

    name = "alerts"
    interval = 7.0
    answers: list[str | Exception] = []

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self.fetches = 0
        self.closed = False

    async def fetch(self, *, fresh: bool = False) -> tuple[str, ...]:
        self.fetches += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return (answer,)

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, tuple)
        parts.faults.extend(Fault("warning", "nodes", "alertmanager", str(a)) for a in data)

    def refresh_after(self) -> tuple[str, ...]:
        return ()

    async def close(self) -> None:
        self.closed = True


def _alerts_only() -> SourceRegistry:
    return SourceRegistry((("alerts", Alerts),))


def test_a_registered_source_is_refreshed_degraded_and_reported() -> None:
    Alerts.answers = ["DiskFilling on talos-node-1", BackendError("alertmanager: 503")]

    async def go() -> None:
        collector = Collector(Config(), registry=_alerts_only())
        assert collector.source_names == ("alerts",)
        assert collector.interval("alerts") == 7.0 and not collector.watching("alerts")
        ok = snapshot_to_json(await collector.refresh_all())
        assert ok["sources"][0]["source"] == "alerts" and ok["sources"][0]["health"] == "ok"
        assert [f["message"] for f in ok["faults"]] == ["DiskFilling on talos-node-1"]

        bad = snapshot_to_json(await collector.refresh("alerts"))
        assert bad["sources"][0]["health"] == "degraded"
        assert bad["sources"][0]["reason"] == "alertmanager: 503"
        assert bad["sources"][0]["last_success"] is not None  # the last good data is kept
        messages = [f["message"] for f in bad["faults"]]
        assert messages == ["alertmanager: 503", "DiskFilling on talos-node-1"], messages
        assert bad["healthy"] is False
        json.dumps(bad)  # what `status --json` prints
        source = collector.source("alerts")
        assert isinstance(source, Alerts) and source.fetches == 2
        await collector.close()
        assert source.closed

    asyncio.run(go())


def test_a_source_that_hangs_times_out_alone() -> None:
    class Slow(Alerts):
        name = "slow"

        async def fetch(self, *, fresh: bool = False) -> tuple[str, ...]:
            await asyncio.sleep(30)
            return ()

    Alerts.answers = ["fine"]
    registry = SourceRegistry((("slow", Slow), ("alerts", Alerts)))

    async def go() -> None:
        collector = Collector(Config(), timeout=0.05, registry=registry)
        s = await collector.refresh_all()
        health = {src.source: (src.health, src.reason) for src in s.sources}
        assert health == {"slow": (Health.DEGRADED, "timed out"), "alerts": (Health.OK, "")}
        await collector.close()

    asyncio.run(go())


def test_refresh_all_waits_for_what_a_source_reads() -> None:
    order: list[str] = []

    class First(Alerts):
        async def fetch(self, *, fresh: bool = False) -> tuple[str, ...]:
            await asyncio.sleep(0.05)
            order.append("first")
            return ()

    class Second(Alerts):
        def refresh_after(self) -> tuple[str, ...]:
            return ("first",)

        async def fetch(self, *, fresh: bool = False) -> tuple[str, ...]:
            order.append("second" if self.context.latest("first") == () else "too early")
            return ()

    registry = SourceRegistry((("first", First), ("second", Second)))

    async def go() -> None:
        collector = Collector(Config(), registry=registry)
        await collector.refresh_all()
        await collector.close()

    asyncio.run(go())
    assert order == ["first", "second"]


def test_the_registry_holds_the_builtins_once_and_lends_names() -> None:
    assert SOURCES == REGISTRY.names() == ("kubernetes", "talos", "proxmox", "git", "mayastor")
    assert [str(n) for n in SourceName] == list(SOURCES)
    with REGISTRY.registered("alerts", Alerts):
        assert REGISTRY.names()[-1] == "alerts"
        with pytest.raises(ValueError, match="already registered"):
            REGISTRY.register("alerts", Alerts)
    assert "alerts" not in REGISTRY.names()


def test_builtin_sources_are_sources_and_kubernetes_is_watchable() -> None:
    context = SourceContext(Config(), 1.0, lambda _name: None)
    built: dict[str, Source] = {n: f(context) for n, f in REGISTRY.factories().items()}
    for name, source in built.items():
        assert source.name == name and source.interval > 0
    watchable = {n for n, s in built.items() if isinstance(s, WatchableSource)}
    assert watchable == {SourceName.KUBERNETES}


def test_the_collector_is_a_snapshot_feed() -> None:
    feed: SnapshotFeed = Collector(Config(read_only=True), registry=_alerts_only())
    assert feed.operations is None and feed.source_names == ("alerts",)
