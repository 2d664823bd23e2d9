"""One pane: a stale/loading banner for its own sources above its resource table."""

from __future__ import annotations

from dapper.backends.model import ClusterSnapshot, Health
from dapper.tui import format as fmt
from dapper.tui.panes import PaneSpec
from dapper.tui.widgets.table import ResourceTable
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static


def banner_text(spec: PaneSpec, snapshot: ClusterSnapshot, now: float, has_rows: bool) -> Text:
    """`⚠ stale 42s · proxmox: 401 Unauthorized` for this pane's failing sources, else empty."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for name in spec.sources:
        src = snapshot.source(name)
        if src.health is Health.DEGRADED:
            age = (
                "never fetched"
                if src.last_success is None
                else "stale " + fmt.fine_age(now - src.last_success)
            )
            if text:
                text.append(" · ")
            text.append(f"⚠ {age}", style="bold red")
            text.append(f" {name}: ")
            text.append(fmt.one_line(src.reason) or "failed")
        elif src.health is Health.UNKNOWN and not has_rows and name == spec.sources[0]:
            if text:
                text.append(" · ")
            text.append(f"… waiting for {name}", style="dim")
    return text


class ResourcePane(Vertical):
    """A titled pane; the border title carries its number, name and counts."""

    def __init__(self, spec: PaneSpec, *, writable: bool) -> None:
        super().__init__(id=f"pane-{spec.id}", classes="pane")
        self.spec = spec
        self.table = ResourceTable(spec, writable=writable, id=f"table-{spec.id}")
        self.banner = Static("", classes="banner", markup=False)

    def compose(self) -> ComposeResult:
        yield self.banner
        yield self.table

    def show(self, snapshot: ClusterSnapshot, now: float) -> None:
        if snapshot.taken_at > 0 or self.table.total:  # the first frame has no table to draw
            self.table.show(snapshot, now)
        text = banner_text(self.spec, snapshot, now, self.table.total > 0)
        if not text and self.table.total and not self.table.shown:
            what = "faults" if self.table.faults_only else "rows"
            text = Text(f"no {what} match", style="dim")
            if self.table.filter_text:
                text.append(f" /{self.table.filter_text}", style="dim")
        self.banner.update(text)
        self.banner.display = bool(text)
        self.border_title = self.title_text()

    def title_text(self) -> str:
        t = self.table
        count = f"{t.shown}/{t.total}" if t.shown != t.total else str(t.total)
        faults = f" ✗{t.fault_count}" if t.fault_count else ""
        extra = ""
        if t.filter_text:
            extra += f" /{t.filter_text}"
        if t.faults_only:
            extra += " !faults"
        return f"{self.spec.key} {self.spec.title} {count}{faults}{extra}"

    def refresh_banner(self, snapshot: ClusterSnapshot, now: float) -> None:
        """Only the banner's ages change between snapshots; leave the table alone."""
        text = banner_text(self.spec, snapshot, now, self.table.total > 0)
        if text:
            self.banner.update(text)
            self.banner.display = True
