"""The one-line bars: health header, pane bar, newest-fault line and action progress line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dapper.backends.model import ClusterSnapshot, Fault, Health, summarize
from dapper.tui import format as fmt
from dapper.tui.pane_registry import pane_registry
from dapper.tui.pane_spec import PaneSpec
from rich.text import Text
from textual.visual import VisualType
from textual.widgets import Static

GOOD, BAD, WARN = "green", "bold red", "yellow"


@dataclass(frozen=True)
class HeaderItem:
    """One pane's count in the header."""

    label: str
    good: int
    total: int
    faults: int
    warnings: int  # neither good nor faults (cordoned nodes): yellow, not red
    known: bool  # its source has answered once (else: loading, or unknown when it fails)
    source: str  # whose failure makes the count unknown rather than zero
    allocation: bool  # good/total are allocated/capacity units: only over is bad


def health_counts(snapshot: ClusterSnapshot) -> tuple[HeaderItem, ...]:
    """Per pane with a header count: the same counts `dapper-tui status` prints, so the
    header and the monitoring command never disagree. Warnings (a cordoned node, a
    suspended Kustomization) stay on the fault line, not in the ✗ counts.

    Kept for the last snapshot (they are immutable): the header is drawn again at each
    tick and key, and counting 20,000 pods each time cost a filter keystroke ~2 ms."""
    global _counted
    specs = tuple(pane_registry().ordered())
    if _counted is not None and _counted[0] is snapshot and _counted[1] == specs:
        return _counted[2]
    items = _count(snapshot, specs)
    _counted = (snapshot, specs, items)
    return items


_counted: tuple[ClusterSnapshot, tuple[PaneSpec, ...], tuple[HeaderItem, ...]] | None = None


def _count(snapshot: ClusterSnapshot, specs: tuple[PaneSpec, ...]) -> tuple[HeaderItem, ...]:
    sm = summarize(snapshot)
    items = []
    for spec in specs:
        if spec.header is not None:
            c = spec.header.count(sm, snapshot)
            items.append(
                HeaderItem(
                    spec.header.label,
                    c.good,
                    c.total,
                    c.faults,
                    c.warnings,
                    c.known,
                    c.source or spec.sources[0],
                    spec.header.allocation,
                )
            )
    return tuple(items)


def header_text(
    snapshot: ClusterSnapshot,
    *,
    mode: str,
    read_only: bool,
    now: float,
    status: str = "",
    width: int = 0,
) -> Text:
    """` LAB  READ-ONLY  4s ago  nodes 7/7 · vms 7/7 · gpu slots 12/16 · pools 4/4 · ks 37/38 ✗1`.

    The age (or the connection error) comes before the counts so 80 columns never cut it;
    when the whole line would not fit `width`, it tightens (no dots between counts, no
    "ago") so the last count still shows.
    """
    full = _header(snapshot, mode=mode, read_only=read_only, now=now, status=status)
    if not width or full.cell_len <= width:
        return full
    return _header(snapshot, mode=mode, read_only=read_only, now=now, status=status, tight=True)


def _header(
    snapshot: ClusterSnapshot,
    *,
    mode: str,
    read_only: bool,
    now: float,
    status: str,
    tight: bool = False,
) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    if snapshot.cluster in ("", "LAB"):
        t.append(f" {mode} ", style="bold reverse cyan" if mode == "LAB" else "bold reverse")
    else:
        t.append(f" {snapshot.cluster} ", style="bold reverse")
        t.append(f" {mode}", style="bold cyan" if mode == "LAB" else "bold")
    if read_only:
        t.append(" ")
        t.append(" READ-ONLY ", style="bold magenta on bright_white")
    if snapshot.insecure_tls:  # which APIs, in status and config check; here, that it is so
        apis = ",".join(line.split(":", 1)[0] for line in snapshot.insecure_tls)
        t.append(" ")
        t.append(f" TLS UNVERIFIED: {apis} ", style="bold white on red")
    fetched = snapshot.taken_at > 0
    t.append(" ")
    if status:
        t.append(status, style=BAD)
    elif fetched:
        # the age of what is on screen, said as such (a bare `0s` reads as a counter)
        age = fmt.fine_age(now - snapshot.taken_at)
        t.append(age if tight else f"{age} ago", style="dim")
    else:
        t.append("connecting…", style="dim")
    t.append("  ")
    for i, item in enumerate(health_counts(snapshot)):
        good, total, faults = item.good, item.total, item.faults
        if i:
            t.append("  " if tight else " · ", style="dim")
        t.append(f"{item.label} ")
        if not item.known or not fetched:  # unknown, not zero: loading, or failing
            failing = snapshot.source(item.source).health is Health.DEGRADED
            t.append("?" if failing else "…", style=BAD if failing else "dim")
            continue
        if total == 0:
            t.append("0/0", style="dim")
        elif item.allocation:
            t.append(f"{good}/{total}", style=BAD if good > total else "")
        elif good == total and not faults:
            t.append(f"{good}/{total}", style=GOOD)
        else:
            only_warnings = good + item.warnings == total and not faults
            t.append(f"{good}/{total}", style=WARN if only_warnings else BAD)
        if faults:
            t.append(f" ✗{faults}", style=BAD)
    degraded = [s for s in snapshot.sources if s.health is Health.DEGRADED]
    stale = [s for s in degraded if s.last_success is not None]
    if stale:  # last good data kept, with its age
        ages = ", ".join(f"{s.source} {fmt.fine_age(now - (s.last_success or now))}" for s in stale)
        t.append(f"  ⚠ stale: {ages}", style=BAD)
    down = [s.source for s in degraded if s.last_success is None]
    if down:  # never answered: its counts are `?`
        t.append("  ⚠ down: " + ", ".join(down), style=BAD)
    return t


def pane_bar_text(
    panes: Sequence[PaneSpec], active: str, *, faults_only: bool, filter_text: str, sort: str
) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    for spec in panes:
        label = f" {spec.key} {spec.title} "
        t.append(label, style="bold reverse" if spec.id == active else "")
    hints = []
    if filter_text:
        hints.append(f"/{filter_text}")
    if faults_only:
        hints.append("!faults")
    if sort:
        hints.append(f"sort:{sort}")
    if hints:
        t.append("  " + "  ".join(hints), style="bold yellow")
    return t


def newest_fault(snapshot: ClusterSnapshot) -> Fault | None:
    """The fault the fault line shows: the first by `Fault.rank` (the events pane's order)."""
    return min(snapshot.faults, key=Fault.rank, default=None)


def fault_line_text(snapshot: ClusterSnapshot, now: float) -> Text:
    """` ✗ 3 faults · observability/loki 2m: HealthCheckFailed: …`: how many, then the newest
    (subject and age first, so a narrow screen cuts only the end of the message)."""
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    f = newest_fault(snapshot)
    if f is None:
        waiting = [s.source for s in snapshot.sources if s.health is Health.UNKNOWN]
        settling = sum(k.ready == "Unknown" for k in snapshot.kustomizations)
        if waiting or snapshot.taken_at <= 0:  # no verdict before every source answered
            t.append(" … loading " + ", ".join(waiting), style="dim")
        elif settling:
            t.append(f" ⟳ {settling} Kustomizations reconciling", style=WARN)
        elif all(s.ok for s in snapshot.sources):
            t.append(" ✓ no faults", style=GOOD)
        return t
    error = f.severity == "error"
    t.append(" ✗ " if error else " ⚠ ", style=BAD if error else WARN)
    count = len(snapshot.faults)
    if count > 1:
        lister = pane_registry().find("faults")  # the pane `:faults` jumps to
        where = f" ({lister.key} lists them)" if lister is not None else ""
        t.append(f"{count} faults{where} · ", style=BAD if error else WARN)
    t.append(f.subject, style="bold")
    if f.since:
        t.append(f" {fmt.since(f.since, now)}", style="dim")
    t.append(": " + fmt.one_line(f.message))
    return t


Keys = Sequence[tuple[str, str]]
# console keys a narrow footer gives up first (help lists them); `? help`, `q quit` stay
OPTIONAL_KEYS = ("b", ":", "!", "/", "⏎")


def key_bar_text(keys: Keys, actions: Keys = (), width: int = 0) -> Text:
    """The footer: the console's own keys, then the pane's action keys. When that does not
    fit `width`, the actions come first and optional console keys give way (`b`, `:`, …),
    so every action of the pane and `? help` stay on screen at 80 columns."""
    full = _key_bar(keys, actions)
    if not width or not actions or full.cell_len <= width:
        return full
    kept = list(keys)
    narrow = _key_bar(kept, actions, actions_first=True)
    for key in OPTIONAL_KEYS:
        if narrow.cell_len <= width:
            break
        kept = [(k, what) for k, what in kept if k != key]
        narrow = _key_bar(kept, actions, actions_first=True)
    return narrow


def _key_bar(keys: Keys, actions: Keys, *, actions_first: bool = False) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    groups = [(keys, "bold cyan"), (actions, "bold yellow")]
    if actions_first:
        groups.reverse()
    for g, (pairs, style) in enumerate(p for p in groups if p[0]):
        if g:
            t.append("  │", style="dim")
        for i, (key, what) in enumerate(pairs):
            t.append(" " if i == 0 and not g else "  ")
            t.append(key, style=style)
            t.append(f" {what}")
    return t


class TextLine(Static):
    """A one-line Static that never interprets markup (API text may contain `[`).

    It is one line tall (app.tcss), so new text never changes its size: an update
    repaints the line and skips the screen's layout pass, and the same text again does
    nothing (at 1,500 table rows a layout pass cost the event loop over 100 ms)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._shown: object = ""

    def update(self, content: VisualType = "", *, layout: bool = False) -> None:
        if content == self._shown:
            return
        self._shown = content
        super().update(content, layout=layout)
