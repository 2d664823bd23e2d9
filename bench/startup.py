"""Startup benchmark: time to first paint and to a full screen of data, vs a bare Textual app.

Each sample is a fresh interpreter (imports are the cost being measured), started by this
script; the child reports wall-clock times since its own spawn. Run:

    .venv/bin/python bench/startup.py [--runs 5]

Goal (issue 5): the console's first paint at most 1.5x the bare app's first paint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def child(mode: str, spawned: float) -> None:
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

        Hello().run(headless=True, size=(160, 48))
    else:
        from dapper.backends.config import Config
        from dapper.cli.console_cmd import Connector
        from dapper.tui.app import DapperApp

        connector = Connector(Config())

        class Timed(DapperApp):
            def on_ready(self) -> None:  # posted once the first frame is on screen
                result.setdefault("paint", time.time() - spawned)
                result["backend_imported_at_paint"] = float("kubernetes" in sys.modules)
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
            Timed(Config(), connector).run(headless=True, size=(160, 48))
        finally:
            connector.stop()
    print(json.dumps(result), flush=True)


def sample(mode: str) -> dict[str, float]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--spawned", repr(spawned)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=["bare", "dapper"])
    parser.add_argument("--spawned", type=float)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.spawned)
        return 0
    bare, paint, full, dapper = [], [], [], []
    for _ in range(args.runs):  # interleaved, so machine noise hits both alike
        bare.append(sample("bare")["paint"])
        d = sample("dapper")
        dapper.append(d)
        paint.append(d["paint"])
        full.append(d["full"])
    b, p, f = (statistics.median(x) for x in (bare, paint, full))
    print(f"bare Textual first paint     median {b * 1000:7.0f} ms  ({args.runs} runs)")
    print(
        f"dapper-tui first paint       median {p * 1000:7.0f} ms  ratio {p / b:.2f}x (goal <= 1.5x)"
    )
    print(f"dapper-tui full data (lab)   median {f * 1000:7.0f} ms  (includes starting the lab)")
    if any(d.get("backend_imported_at_paint") for d in dapper):
        print("WARNING: the kubernetes client was imported before the first paint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
