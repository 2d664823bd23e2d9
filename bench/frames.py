"""The console's event-loop work per snapshot and per key, in CPU time, replayed.

    python bench/frames.py record --lab-dir DIR [--seconds 40] --out snaps.pickle
    python bench/frames.py replay snaps.pickle [--size 160x48] [--keys 40]

`bench/keys.py` times what a user sees, but on a shared machine its wall times move
with everything else running. This bench isolates the console's own share: `record`
keeps the snapshots a watching collector produces against a running lab (500 nodes and
churn: what the console would be handed), and `replay` hands them to the real app in
a headless terminal, one at a time, measuring the main thread's CPU time (not wall time)
until the screen is painted again, then the same for keys pressed between snapshots.
The loop cannot answer a key while it does this work, so these are the floors of what
keys.py measures. Printed: p50/p95/max per snapshot applied and per key kind.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def record(lab_dir: Path, seconds: float, out: Path) -> int:
    from dapper.backends.config import load_config
    from dapper.backends.snapshot.collector import Collector

    config = load_config(lab_dir / "config-readonly.toml", read_only=True)

    async def go() -> list[Any]:
        collector = Collector(config, timeout=20)
        await collector.refresh_all()
        collector.start_watches()
        snaps = [collector.snapshot]

        async def keep_fresh(name: str) -> None:  # each source on its own timer, as the console
            while True:
                await collector.refresh(name)
                await asyncio.sleep(1.0 if collector.watching(name) else collector.interval(name))

        loops = [asyncio.ensure_future(keep_fresh(n)) for n in collector.source_names]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            if collector.snapshot.taken_at != snaps[-1].taken_at:
                snaps.append(collector.snapshot)
            print(f"\r{len(snaps)} snapshots", end="", file=sys.stderr)
        for task in loops:
            task.cancel()
        await collector.close()
        return snaps

    snaps = asyncio.run(go())
    out.write_bytes(pickle.dumps(snaps, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"\n{len(snaps)} snapshots, {len(snaps[-1].nodes)} nodes -> {out}", file=sys.stderr)
    return 0


class ReplayFeed:
    """A SnapshotFeed that only hands back what the replay put in it."""

    def __init__(self, config: Any, first: Any) -> None:
        self.config = config
        self.snapshot = first
        self.operations = None

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.source for s in self.snapshot.sources)

    def interval(self, source: str) -> float:
        return 3600.0

    async def refresh(self, source: str, *, fresh: bool = False) -> Any:
        return self.snapshot

    async def refresh_all(self) -> Any:
        return self.snapshot

    def start_watches(self, **options: Any) -> None:
        return None

    def on_change(self, callback: Any) -> None:
        return None

    def watching(self, source: str) -> bool:
        return False

    def watchable(self, source: str) -> bool:
        return False

    async def close(self) -> None:
        return None


KEYS = {
    "cursor": ["j"] * 6 + ["k"] * 2,
    "page": ["pagedown", "pageup"],
    "pane switch": ["tab"],
    "filter": ["slash", "t", "a", "escape"],
    "sort": ["s"],
    "detail": ["enter", "escape"],
    "help": ["question_mark", "escape"],
}


def replay(
    path: Path,
    size: tuple[int, int],
    keys_per_snapshot: int,
    profile: Path | None = None,
    profile_keys: bool = False,
    only: str | None = None,
) -> int:
    from dapper.backends.config import load_config
    from dapper.tui.app import DapperApp

    snaps = pickle.loads(path.read_bytes())
    config = load_config(None, read_only=True)
    feed = ReplayFeed(config, snaps[0])
    clock_at = [snaps[0].taken_at]

    async def connect() -> ReplayFeed:
        return feed

    app = DapperApp(config, connect, clock=lambda: clock_at[0], survive_errors=False)
    applies: list[float] = []
    per_key: dict[str, list[float]] = defaultdict(list)

    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()

    callbacks = _time_loop_callbacks()

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.5)
            callbacks.clear()  # from the first snapshot replayed on
            kinds = [(k, v) for k, v in KEYS.items() if only is None or k == only]
            for n, snap in enumerate(snaps[1:]):
                feed.snapshot = snap
                clock_at[0] = snap.taken_at
                t = time.thread_time()
                if profiler is not None and not profile_keys:
                    profiler.enable()
                app._apply(snap)
                await pilot.pause()
                for _ in range(200):  # rows are worked out in a thread, then applied
                    if getattr(app.screen, "shown_snapshot", snap) is snap:
                        break
                    await asyncio.sleep(0.005)
                await pilot.pause()
                if profiler is not None and not profile_keys:
                    profiler.disable()
                applies.append(time.thread_time() - t)
                kind, presses = kinds[n % len(kinds)]
                if profiler is not None and profile_keys:
                    profiler.enable()
                for key in presses[:keys_per_snapshot]:
                    t = time.thread_time()
                    await pilot.press(key)
                    await pilot.pause()
                    per_key[kind].append(time.thread_time() - t)
                if profiler is not None and profile_keys:
                    profiler.disable()

    asyncio.run(go())
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)

    def row(label: str, xs: list[float]) -> str:
        xs = sorted(xs)
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        return (
            f"   {label:<14} {len(xs):>4} {1000 * statistics.median(xs):8.1f}ms "
            f"{1000 * p95:8.1f}ms {1000 * xs[-1]:8.1f}ms"
        )

    print(f"-- {path.name}: {len(snaps)} snapshots, {len(snaps[-1].nodes)} nodes at {size}")
    print(f"   {'what':<14} {'n':>4} {'p50':>10} {'p95':>10} {'max':>10}   (main thread CPU)")
    print(row("snapshot", applies))
    for kind, xs in per_key.items():
        print(row(kind, xs))
    busy = sorted(callbacks)
    over = sum(1 for x in busy if x > 0.010)
    print(
        f"   one loop callback at a time (main thread CPU): {len(busy)} callbacks, "
        f"p99 {1000 * busy[int(0.99 * (len(busy) - 1))]:.1f} ms, max {1000 * busy[-1]:.1f} ms, "
        f"{over} over 10 ms"
    )
    return 0


def _time_loop_callbacks() -> list[float]:
    """Each event-loop callback's main-thread CPU time from now on, in this process: how
    long the loop was blocked at a stretch (a key waits for the callback running)."""
    import asyncio.events

    took: list[float] = []
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        start = time.thread_time()
        try:
            run(handle)
        finally:
            took.append(time.thread_time() - start)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--lab-dir", type=Path, required=True)
    rec.add_argument("--seconds", type=float, default=40.0)
    rec.add_argument("--out", type=Path, required=True)
    rep = sub.add_parser("replay")
    rep.add_argument("snapshots", type=Path)
    rep.add_argument("--size", default="160x48")
    rep.add_argument("--keys", type=int, default=8, help="keys pressed after each snapshot")
    rep.add_argument("--profile", type=Path, help="cProfile the snapshot applies into this file")
    rep.add_argument("--profile-keys", action="store_true", help="profile the keys instead")
    rep.add_argument("--only", choices=sorted(KEYS), help="press only this kind of key")
    args = parser.parse_args()
    if args.cmd == "record":
        return record(args.lab_dir, args.seconds, args.out)
    cols, rows = (int(x) for x in args.size.split("x"))
    return replay(
        args.snapshots, (cols, rows), args.keys, args.profile, args.profile_keys, args.only
    )


if __name__ == "__main__":
    raise SystemExit(main())
