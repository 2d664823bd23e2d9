"""One pane: a stale/loading banner for its own sources above its resource table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dapper.backends.model import ClusterSnapshot, Health
from dapper.tui import format as fmt
from dapper.tui.pane_spec import PaneSpec
from dapper.tui.widgets.bars import TextLine
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import AwaitMount

if TYPE_CHECKING:
    from dapper.tui.widgets.table import ResourceTable, TablePlan


def banner_text(spec: PaneSpec, snapshot: ClusterSnapshot, now: float, has_rows: bool) -> Text:
    """`⚠ proxmox stale 42s · 401 Unauthorized` for each failing source of this pane.

    Source and age first: a narrow pane cuts the end of the reason, never the staleness.
    """
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
                text.append("  ")
            text.append(f"⚠ {name} {age}", style="bold red")
            text.append(" · " + (fmt.one_line(src.reason) or "failed"))
        elif src.health is Health.UNKNOWN and not has_rows and name == spec.sources[0]:
            if text:
                text.append("  ")
            text.append(f"… waiting for {name}", style="dim")
    return text


class ResourcePane(Vertical):
    """A titled pane; the border title carries its number, name and counts.

    Its table is made and mounted on demand (`build`), not in compose: the DataTable
    import, mount and styling cost milliseconds the first frame does not need (no data can
    be there yet), and at 80x24 a hidden pane's table may never be needed at all.
    """

    def __init__(self, spec: PaneSpec, *, writable: bool) -> None:
        super().__init__(id=f"pane-{spec.id}", classes="pane")
        self.spec = spec
        self.writable = writable
        self._table: ResourceTable | None = None
        self.banner = TextLine(classes="banner")
        self.banner.display = False
        self.border_title = f"{spec.key} {spec.title}"

    @property
    def table(self) -> ResourceTable:
        """The pane's table (created on first use; mounted only by `build`)."""
        if self._table is None:
            from dapper.tui.widgets.table import ResourceTable

            self._table = ResourceTable(
                self.spec, writable=self.writable, id=f"table-{self.spec.id}"
            )
        return self._table

    def compose(self) -> ComposeResult:
        yield self.banner

    @property
    def built(self) -> bool:
        return self._table is not None and self._table.is_attached

    def build(self) -> AwaitMount | None:
        """Mount the table once (await the result to wait for it); later calls do nothing."""
        if self.table.parent is None and self.is_attached:  # not while the app closes
            return self.mount(self.table)
        return None

    def show(self, snapshot: ClusterSnapshot, now: float, plan: TablePlan | None = None) -> None:
        """Show `snapshot`: from `plan` (its rows worked out off the loop by `prepare`)
        when the view has not moved on since, else working them out here."""
        built = self.built
        if self._has_rows_for(snapshot) and (plan is None or not self.table.apply(plan)):
            self.table.show(snapshot, now)
        has_rows = built and self.table.total > 0
        text = banner_text(self.spec, snapshot, now, has_rows)
        if not text and has_rows and not self.table.shown:
            what = "faults" if self.table.faults_only else "rows"
            text = Text(f"no {what} match", style="dim")
            if self.table.filter_text:
                text.append(f" /{self.table.filter_text}", style="dim")
        elif not text and built and snapshot.taken_at > 0 and not has_rows:
            text = Text(f"no {self.spec.noun}s", style="dim")
        self.banner.update(Text(" ").append_text(text) if text else text)
        if self.banner.display != bool(text):
            self.banner.display = bool(text)
        title = Text(self.title_text())  # the filter is typed text: no markup
        if title != self.border_title:
            self.border_title = title

    def shows(self, snapshot: ClusterSnapshot) -> bool:
        """The table shows this very snapshot already."""
        return self.built and self.table.showing is snapshot

    def prepare(self, snapshot: ClusterSnapshot, now: float) -> TablePlan | None:
        """The table's rows for `snapshot`; safe in a thread (see ResourceTable.prepare)."""
        return self.table.prepare(snapshot, now) if self._has_rows_for(snapshot) else None

    def _has_rows_for(self, snapshot: ClusterSnapshot) -> bool:
        """The table takes `snapshot` once built, and once data came (or it had some)."""
        return self.built and (snapshot.taken_at > 0 or self.table.total > 0)

    def title_text(self) -> str:
        if not self.built:
            return f"{self.spec.key} {self.spec.title}"
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
        text = banner_text(self.spec, snapshot, now, self.built and self.table.total > 0)
        if text:
            self.banner.update(Text(" ").append_text(text))
            self.banner.display = True
