"""Keypress latency of the real console, as a user at a terminal feels it.

    pip install -e '.[bench]'       # pyte: a terminal emulator reads the console's screen
    python bench/keys.py [--nodes 500] [--pods 20000] [--churn 50] [--sizes 160x48,80x24]

Starts `dapper-tui lab` in its own process (sized by --nodes/--pods, churning), then for
each terminal size runs `dapper-tui` on a pseudo-terminal against it, exactly as over SSH.
Every key is written to the terminal and timed until the screen (as a terminal emulator
shows it, the clock line excluded) differs from the screen before the key. Keys are
pressed while the sources refresh on their timers and watches deliver the churn. Printed:
p50/p95/p99/max per kind of key, the console's RSS, and how often the screen changed by
itself within 100 ms (a "null" key: the chance that a sample caught a refresh instead).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import queue
import random
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyte

REPO = Path(__file__).resolve().parents[1]
DOWN, UP, PGDN, PGUP = "j", "k", "\x1b[6~", "\x1b[5~"
ESC = "\x1b"
TIMEOUT = 5.0  # a key whose result never shows counts as this long


@dataclass
class Terminal:
    """The console on a pseudo-terminal, and what a terminal emulator makes of its output."""

    pid: int
    fd: int
    screen: pyte.Screen
    stream: pyte.ByteStream
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    lines: tuple[str, ...] = ()
    changed_at: float = 0.0
    alive: bool = True
    _rows: dict[int, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def pump(self) -> None:
        """Read output until the console exits, as fast as it comes: pyte (a terminal in
        pure Python, many times slower than a real one) parses in another thread, so its
        speed neither holds back the console's writes nor counts in a key's time. A
        change is dated by the arrival of the output that made it."""
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        threading.Thread(target=self._parse, args=(chunks,), daemon=True).start()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.put((time.perf_counter(), data))
        chunks.put((time.perf_counter(), b""))

    def _parse(self, chunks: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        """Feed the emulator; note when the screen (below the clock line) last changed."""
        while True:
            arrived, data = chunks.get()
            if not data:
                break
            with self.lock:
                self.stream.feed(data)
                lines = self._signature()
                if lines != self.lines:
                    self.lines, self.changed_at = lines, arrived
                    self.changed.notify_all()
        with self.lock:
            self.alive = False
            self.changed.notify_all()

    def _signature(self) -> tuple:
        """Every line below the clock as shown: characters and their colours (a cursor
        move changes only a row's background)."""
        screen = self.screen
        for y in screen.dirty:
            row = screen.buffer[y]
            self._rows[y] = tuple(
                (c.data, c.fg, c.bg, c.reverse) for c in (row[x] for x in range(screen.columns))
            )
        screen.dirty.clear()
        return tuple(self._rows.get(y) for y in range(1, screen.lines))

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.screen.display)

    def press(self, keys: str, timeout: float = TIMEOUT) -> float:
        """Seconds from writing `keys` to the screen differing from before them."""
        with self.lock:
            before = self.lines
            t0 = time.perf_counter()
            if keys:
                os.write(self.fd, keys.encode())
            # output that arrived before the key but is parsed after it is not its result
            while (self.lines == before or self.changed_at < t0) and self.alive:
                left = timeout - (time.perf_counter() - t0)
                if left <= 0:
                    return timeout
                self.changed.wait(left)
            return self.changed_at - t0

    def wait_for(self, needle: str, timeout: float, *, absent: str = "") -> bool:
        """Until the screen shows `needle` and (when given) no longer shows `absent`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.text()
            if needle in text and not (absent and absent in text):
                return True
            time.sleep(0.1)
        return False

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Until the screen has not changed for `quiet` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                idle = time.perf_counter() - self.changed_at
            if idle >= quiet:
                return
            time.sleep(quiet - idle)

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident set of the console process."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_console(config: Path, cols: int, rows: int) -> Terminal:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size first, then the console
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        os.execve(
            sys.executable,
            [sys.executable, "-m", "dapper.cli.main", "--config", str(config)],
            env,
        )
    screen = pyte.Screen(cols, rows)
    term = Terminal(pid, fd, screen, pyte.ByteStream(screen))
    threading.Thread(target=term.pump, daemon=True).start()
    return term


def stop_console(term: Terminal) -> None:
    try:
        os.write(term.fd, b"q")
        for _ in range(50):
            done, _ = os.waitpid(term.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(term.pid, signal.SIGTERM)
            os.waitpid(term.pid, 0)
    except (OSError, ChildProcessError):
        pass


def plan(presses: int) -> list[tuple[str, str]]:
    """(kind, keys) in the order pressed: cursor and pages in Nodes, then in Flux, pane
    switches, filter typing, sort, a detail view and help opened and closed."""
    # every key must change the screen (a key that cannot is timed until a refresh
    # happens to land): the console starts on Nodes, so go there from VMs
    steps: list[tuple[str, str]] = [("pane switch", "2"), ("pane switch", "1")]
    steps += [("cursor nodes", DOWN if i % 4 != 3 else UP) for i in range(presses)]
    steps += [("page", PGDN if i % 2 == 0 else PGUP) for i in range(presses // 4)]
    steps += [("pane switch", "5")]
    steps += [("cursor flux", DOWN if i % 4 != 3 else UP) for i in range(presses)]
    steps += [("page", PGDN if i % 2 == 0 else PGUP) for i in range(presses // 4)]
    for _ in range(presses // 8):
        steps += [("pane switch", key) for key in "123456"]
    for _ in range(presses // 8):
        steps += [("filter", "/")] + [("filter", ch) for ch in "bench-app-01"]
        steps += [("filter", "\r"), ("filter", ESC)]
    steps += [("sort", "s") for _ in range(presses // 4)]
    for _ in range(presses // 8):
        steps += [("detail", "\r"), ("detail", ESC)]
        steps += [("help", "?"), ("help", ESC)]
    return steps


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(kind: str, values: list[float]) -> str:
    cells = [statistics.median(values), pct(values, 0.95), pct(values, 0.99), max(values)]
    return f"   {kind:14s} {len(values):4d} " + " ".join(f"{v * 1000:6.0f}ms" for v in cells)


def run_size(
    config: Path,
    cols: int,
    rows: int,
    presses: int,
    seed: int,
    show: bool = False,
    soak: float = 0.0,
) -> None:
    rng = random.Random(seed)
    term = start_console(config, cols, rows)
    try:
        t0 = time.perf_counter()
        # a node row, with every pane past "waiting for kubernetes": a VM is named
        # talos-… too, and keys pressed before the nodes are listed move nothing
        if not term.wait_for("talos-", 180, absent="waiting for"):
            print(f"   {cols}x{rows}: the console never showed a node\n{term.text()}")
            return
        startup = time.perf_counter() - t0
        term.settle(quiet=1.0, timeout=60)
        samples: dict[str, list[float]] = {}
        pressed: list[tuple[float, int, str, str]] = []
        for i, (kind, keys) in enumerate(plan(presses)):
            took = term.press(keys)
            samples.setdefault(kind, []).append(took)
            pressed.append((took, i, kind, keys))
            time.sleep(rng.uniform(0.05, 0.25))
        screen_after = term.text()
        if soak:  # the console left running under churn, a key now and then: memory
            end = time.monotonic() + soak
            while time.monotonic() < end:
                term.press(DOWN if rng.random() < 0.5 else UP)
                time.sleep(5)
        null = [term.press("", timeout=0.1) for _ in range(max(20, presses // 2))]
        spontaneous = sum(1 for s in null if s < 0.1) / len(null)
        rss, peak = term.rss_mib()
        print(f"-- {cols}x{rows}: first node shown after {startup:.1f} s")
        print(f"   {'key':14s} {'n':>4s} {'p50':>8s} {'p95':>8s} {'p99':>8s} {'max':>8s}")
        every: list[float] = []
        for kind, values in samples.items():
            every += values
            print(row(kind, values))
        print(row("all", every))
        after = f" after {soak:.0f} s more of churn" if soak else ""
        print(f"   console RSS {rss:.0f} MiB{after} (peak {peak:.0f} MiB)")
        print(f"   screen changed by itself within 100 ms in {spontaneous:.0%} of null probes")
        slowest = sorted(pressed, reverse=True)[:3]
        print(
            "   slowest: "
            + ", ".join(f"#{i} {k} {ks!r} {t * 1000:.0f} ms" for t, i, k, ks in slowest)
        )
        if show:
            print(screen_after)
    finally:
        stop_console(term)


def start_lab(args: argparse.Namespace, directory: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "dapper.cli.main", "lab", "--dir", str(directory)]
    cmd += ["--nodes", str(args.nodes), "--churn", str(args.churn)]
    if args.pods:
        cmd += ["--pods", str(args.pods)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        print("   lab:", line.rstrip())
        if " pods, " in line or ("Ctrl+C" in line and not (args.pods or args.churn)):
            break
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--churn", type=float, default=50.0)
    parser.add_argument("--sizes", default="160x48,80x24")
    parser.add_argument("--presses", type=int, default=40, help="cursor moves per pane")
    parser.add_argument("--lab-dir", help="a running `dapper-tui lab --dir` to use instead")
    parser.add_argument("--show", action="store_true", help="print the screen after the keys")
    parser.add_argument(
        "--soak", type=float, default=0.0, help="seconds to keep the console running before RSS"
    )
    args = parser.parse_args()
    if args.lab_dir:
        for i, size in enumerate(args.sizes.split(",")):
            cols, rows = (int(x) for x in size.split("x"))
            config = Path(args.lab_dir) / "config-readonly.toml"
            run_size(config, cols, rows, args.presses, i, args.show, args.soak)
        return 0
    with tempfile.TemporaryDirectory(prefix="dapper-bench-keys-") as tmp:
        t = time.perf_counter()
        lab = start_lab(args, Path(tmp) / "lab")
        print(
            f"-- lab: {args.nodes} nodes, ~{args.pods} pods, churn {args.churn:g}/s, "
            f"ready after {time.perf_counter() - t:.0f} s"
        )
        try:
            for i, size in enumerate(args.sizes.split(",")):
                cols, rows = (int(x) for x in size.split("x"))
                config = Path(tmp) / "lab" / "config-readonly.toml"
                run_size(config, cols, rows, args.presses, i, args.show, args.soak)
        finally:
            lab.send_signal(signal.SIGTERM)  # SIGINT is ignored when run in the background
            lab.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
