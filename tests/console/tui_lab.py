"""Shared helpers for the console tests: a real lab, a real Collector, a frozen clock.

No tests here; the test_tui_* modules import it as tests.console.tui_lab.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from dapper.backends.config import Config
from dapper.tui.app import DapperApp

from tests.waiting import eventually_async

SETTLE_SECONDS = 30.0
PORT = re.compile(r"127\.0\.0\.1:\d+")
SHA = re.compile(r"sha1:[0-9a-f]{40}")  # the checkout's HEAD moves with every commit


@contextmanager
def running_lab(**kwargs: Any) -> Iterator[Any]:
    from dapper.lab.runtime import start_lab

    lab = start_lab(**kwargs)
    try:
        if lab.flux is not None:
            converge(lab)
        yield lab
    finally:
        lab.stop()


def converge(lab: Any, timeout: float = 90.0) -> None:
    """Flux settled (`FluxTwin.settle`): pictures must not catch the cluster half way."""
    if not lab.flux.settle(timeout=timeout):
        raise TimeoutError(f"Flux did not settle: {lab.flux.unsettled()}")


class FrozenClock:
    """`now` is the shown snapshot's own time (+2 s): ages do not depend on when a test runs."""

    def __init__(self) -> None:
        self.app: DapperApp | None = None

    def __call__(self) -> float:
        taken = self.app.snapshot.taken_at if self.app is not None else 0.0
        return taken + 2.0 if taken else 0.0


def _stable(snapshot: Any) -> Any:
    """Lab ports are random, and so is which pool holds which volume; snapshot SVGs must
    not be. Only used for snap_compare apps."""
    sources = tuple(
        replace(s, reason=PORT.sub("127.0.0.1:PORT", s.reason)) for s in snapshot.sources
    )
    faults = tuple(
        replace(f, message=PORT.sub("127.0.0.1:PORT", f.message)) for f in snapshot.faults
    )
    ks = tuple(
        replace(
            k,
            applied_revision=_sha(k.applied_revision),
            attempted_revision=_sha(k.attempted_revision),
            message=_sha(k.message),
            conditions=tuple(replace(c, message=_sha(c.message)) for c in k.conditions),
        )
        for k in snapshot.kustomizations
    )
    return replace(
        snapshot, sources=sources, faults=faults, kustomizations=ks, pools=_even(snapshot.pools)
    )


def _even(pools: tuple[Any, ...]) -> tuple[Any, ...]:
    """Pools' usage spread evenly. Which pool a volume lands on depends on the order the
    Flux twin's threads applied the claims (emptiest pool first, as Mayastor places); the
    total does not, so the pictures show the total, split."""
    if not pools:
        return pools
    each = sum(p.used for p in pools) // len(pools)
    return tuple(replace(p, used=each, available=max(0, p.capacity - each)) for p in pools)


def _sha(text: str) -> str:
    return SHA.sub("sha1:" + "0" * 40, text)


class QuietCollector:
    """The real Collector, refreshed once per source (long intervals) for still pictures."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.SOURCES = inner.SOURCES
        self.config = inner.config
        self.operations = inner.operations

    @property
    def snapshot(self) -> Any:
        return _stable(self.inner.snapshot)

    @property
    def source_names(self) -> tuple[str, ...]:
        return self.inner.source_names

    def interval(self, source: str) -> float:
        return 3600.0

    async def refresh(self, source: str, *, fresh: bool = False) -> Any:
        await self.inner.refresh(source)
        return self.snapshot

    async def refresh_all(self) -> Any:
        await self.inner.refresh_all()
        return self.snapshot

    def start_watches(self, **options: Any) -> None:
        """No watches: a still picture refreshes each source once, on its timer."""

    def on_change(self, callback: Any) -> None:
        pass

    def watching(self, source: str) -> bool:
        return False

    def watchable(self, source: str) -> bool:
        return False

    async def close(self) -> None:
        await self.inner.close()


def make_app(
    lab: Any, *, read_only: bool = False, still: bool = False, survive_errors: bool = False
) -> DapperApp:
    """A DapperApp wired to `lab` exactly as the CLI wires it (config -> Collector). Unlike
    the CLI's, a failing handler fails the test (`survive_errors` off) unless asked."""
    config: Config = lab.readonly_config if read_only else lab.config
    clock = FrozenClock()

    async def connect() -> Any:
        from dapper.backends.snapshot.collector import Collector

        collector = Collector(config)
        return QuietCollector(collector) if still else collector

    app = DapperApp(
        config, connect, clock=clock if still else time.time, survive_errors=survive_errors
    )
    clock.app = app
    return app


def on_screen(app: DapperApp) -> bool:
    """The main screen shows the app's latest snapshot (its rows are worked out in a
    thread, so they land a moment after the snapshot does)."""
    main = app.main
    return main.snapshot is None or main.shown_snapshot is main.snapshot


async def settle(pilot: Any, app: DapperApp, rounds: int = 1) -> None:
    """Wait until every source has been refreshed `rounds` times and the screen caught up."""

    def refreshed() -> bool:
        collector = app.collector
        return collector is not None and all(
            app.refreshes.get(s, 0) >= rounds for s in collector.SOURCES
        )

    await pilot.pause(0.02)  # let the app take in what the test just did
    await eventually_async(
        lambda: refreshed() and on_screen(app),
        timeout=SETTLE_SECONDS,
        interval=0.02,
        message=lambda: f"every source to refresh {rounds}x: {app.refreshes}",
        pause=pilot.pause,
    )
    await pilot.pause()
    await pilot.pause()
