"""Startup benchmark: time to first paint and to a full screen of data, vs a bare Textual app.

Each sample is a fresh interpreter (imports are the cost being measured), started by this
script; the child reports wall-clock times since its own spawn. Both at 80x24 (one pane)
and 160x48 (the grid of six). Run:

    .venv/bin/python bench/startup.py [--runs 7] [--sizes 80x24,160x48]

Goal: the console's first paint at most 1.5x the bare app's first paint. The first frame
is the header, pane bar and footer; panes and tables are mounted right after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("kubernetes", "proxmoxer", "grpclib", "pygit2", "ruamel")  # never before first paint


def child(mode: str, spawned: float, size: tuple[int, int]) -> None:
    """Run one app headless; print {"paint": s, "full": s} measured from `spawned`."""
    result: dict[str, float] = {}
    if mode == "bare":
        from textual.app import App
        from textual.widgets import Static

        class Hello(App):
            def compose(self):
                yield Static("hello")

            def on_ready(self) -> None:  # posted once the first frame is on screen
                result["paint"] = time.time() - spawned
                self.exit()

        Hello().run(headless=True, size=size)
    else:
        from dapper.backends.config import Config
        from dapper.cli.console_cmd import Connector
        from dapper.tui.app import DapperApp

        connector = Connector(Config())

        class Timed(DapperApp):
            def on_ready(self) -> None:  # posted once the first frame is on screen
                result.setdefault("paint", time.time() - spawned)
                heavy = [m for m in HEAVY if m in sys.modules]
                result["heavy_imported_at_paint"] = float(len(heavy))
                self.set_interval(0.01, self._check)

            def _check(self) -> None:
                sources = getattr(self.collector, "SOURCES", ())
                if sources and all(self.refreshes.get(s) for s in sources):
                    self.call_after_refresh(self._full)

            def _full(self) -> None:
                if "full" not in result:
                    result["full"] = time.time() - spawned
                    self.exit()

        try:
            Timed(Config(), connector).run(headless=True, size=size)
        finally:
            connector.stop()
    print(json.dumps(result), flush=True)


def sample(mode: str, size: str) -> dict[str, float]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--spawned", repr(spawned), "--size", size],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="80x24,160x48")
    parser.add_argument("--child", choices=["bare", "dapper"])
    parser.add_argument("--spawned", type=float)
    parser.add_argument("--size", default="160x48")
    args = parser.parse_args()
    if args.child:
        width, height = (int(x) for x in args.size.split("x"))
        child(args.child, args.spawned, (width, height))
        return 0
    for size in args.sizes.split(","):
        bare, paint, full, dapper = [], [], [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            bare.append(sample("bare", size)["paint"])
            d = sample("dapper", size)
            dapper.append(d)
            paint.append(d["paint"])
            full.append(d["full"])
        b, p, f = (statistics.median(x) for x in (bare, paint, full))
        print(f"{size}: bare Textual first paint   median {b * 1000:5.0f} ms  ({args.runs} runs)")
        print(f"{size}: dapper-tui first paint     median {p * 1000:5.0f} ms  ratio {p / b:.2f}x")
        print(f"{size}: dapper-tui full data (lab) median {f * 1000:5.0f} ms  (starts the lab)")
        if any(d.get("heavy_imported_at_paint") for d in dapper):
            print(f"WARNING: a client library ({', '.join(HEAVY)}) was imported before paint")
    print("goal: first paint ratio <= 1.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
