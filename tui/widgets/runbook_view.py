"""Pieces of the runbook run view: the engine's thread bridge, the step board, the preview.

The engine runs in a worker thread. `RunBridge` is its emit/prompt/confirm/cancelled
callbacks: events are posted to the screen (Textual's thread-safe `post_message`, which
never blocks the engine), and a question (confirm, a typed secret) waits on a queue for
the operator's answer, giving up when the run is aborted or the screen goes away.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dapper.tui.format import middle_cut
from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

GLYPH = {
    "pending": ("·", "dim"),
    "checking": ("?", "cyan"),
    "running": ("▶", "bold yellow"),
    "verifying": ("⟳", "yellow"),
    "done": ("✓", "green"),
    "skipped": ("–", "green"),
    "failed": ("✗", "bold red"),
}


class EngineEvent(Message):
    """One `dapper.actions.events.Event`, posted from the engine's thread."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class ConfirmAsked(Message):
    """The engine waits for go / no-go on the preview it just emitted."""


class PromptAsked(Message):
    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request


class RunEnded(Message):
    """The engine returned (`result`) or could not run at all (`error`, one line)."""

    def __init__(self, result: Any = None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


class RunBridge:
    """The engine's callbacks, called on its thread; `answer`/`abort` on the UI thread."""

    POLL = 0.2

    def __init__(self, post: Callable[[Message], Any]) -> None:
        self._post = post
        self._answers: queue.Queue[Any] = queue.Queue()
        self.aborted = threading.Event()

    # engine side (worker thread)
    def send(self, message: Message) -> None:
        """Post to the UI; once the console is gone (quit mid-run) stop the run instead."""
        try:
            delivered = self._post(message)
        except RuntimeError:  # the event loop is closed
            delivered = False
        if delivered is False:
            self.aborted.set()

    def emit(self, event: Any) -> None:
        self.send(EngineEvent(event))

    def confirm(self, _preview: Any) -> bool:
        self.send(ConfirmAsked())
        return bool(self._wait())

    def prompt(self, request: Any) -> str:
        from dapper.actions.engine import Cancelled

        self.send(PromptAsked(request))
        value = self._wait()
        if value is None:  # the operator cancelled the question: stop the run, resumable
            raise Cancelled()
        return str(value)

    def cancelled(self) -> bool:
        return self.aborted.is_set()

    def _wait(self) -> Any:
        while not self.aborted.is_set():
            try:
                return self._answers.get(timeout=self.POLL)
            except queue.Empty:
                continue
        return None

    # UI side
    def answer(self, value: Any) -> None:
        self._answers.put(value)

    def abort(self) -> None:
        self.aborted.set()
        self._answers.put(None)


@dataclass
class StepRow:
    title: str
    state: str = "pending"
    message: str = ""
    skipped: bool = False  # `check` found it done during the run (then only verified)


class StepBoard(Static):
    """The run's steps in order, each with its state and, below it, its latest line (what
    `check` found, a wait's status)."""

    def __init__(self, mask: Callable[[str], str], **kw: Any) -> None:
        super().__init__("", **kw)
        self.mask = mask
        self.rows: dict[str, StepRow] = {}
        self.compact = False  # narrow screens: a line under the active step only
        self._lines: list[str] = []

    def set_titles(self, preview: Any) -> None:
        for sp in preview.steps:
            row = self.rows.setdefault(sp.step, StepRow(sp.title))
            row.title = sp.title
            if sp.done:
                row.message = f"nothing to do: {sp.reason or 'already done'}"
        self._paint()

    def step_event(self, step: str, state: str, message: str) -> None:
        row = self.rows.setdefault(step, StepRow(step))
        if state == "skipped":
            row.skipped = True
        if state == "checking" and row.state in ("running", "verifying"):
            row.skipped = False
        row.state = state
        if message or state in ("running", "checking"):
            row.message = message
        self._paint()

    def progress(self, step: str, message: str) -> None:
        row = self.rows.setdefault(step, StepRow(step))
        row.message = message
        self._paint()

    def set_compact(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self._paint()

    def shown_state(self, step: str) -> str:
        row = self.rows[step]
        return "skipped" if row.skipped and row.state == "done" else row.state

    def _paint(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        for n, (step, row) in enumerate(self.rows.items(), start=1):
            state = self.shown_state(step)
            glyph, style = GLYPH.get(state, ("?", ""))
            if n > 1:
                t.append("\n")
            t.append(f" {glyph} ", style=style)
            t.append(f"{state:<9} ", style=style)
            t.append(f"{n}. {row.title}")
            active = state in ("checking", "running", "verifying", "failed")
            if row.message and (active or not self.compact):
                t.append(f"\n{'':13}{self.mask(row.message)}", style="dim")
        self.update(t)
        self._lines = t.plain.splitlines()
        self.border_title = f"Steps ({len(self.rows)})" if self.rows else ""
        self.call_after_refresh(self._mark_more)

    def _mark_more(self) -> None:
        """A box too short for every step says so: `↓ more: scroll`."""
        lines = len(self._lines)
        shown = int(self.scroll_y) + self.scrollable_content_region.height
        more = self.is_mounted and self.size.height > 0 and shown < lines
        self.border_subtitle = "↓ more steps (scroll)" if more else ""

    def on_resize(self) -> None:
        self._mark_more()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._mark_more()


def preview_text(preview: Any, mask: Callable[[str], str], width: int = 0) -> Text:
    """What the run will do, step by step: calls, notes and the masked unified diffs
    (diff lines coloured); the parameters fit on one line so the diffs come early. Given
    the `width`, a diff's `--- path` header is cut in the middle rather than wrapped."""
    t = Text(end="")
    t.append(mask(f"runbook {preview.runbook} (run {preview.run_id})"), style="bold")
    shown = [f"{k}={_param(v)}" for k, v in preview.params.items() if v not in (None, "")]
    if shown:
        t.append("\n" + mask("  ".join(shown)), style="dim")
    for n, sp in enumerate(preview.steps, start=1):
        t.append(f"\n{n}. {sp.title}", style="bold")
        if sp.done:
            t.append(mask(f"  [nothing to do: {sp.reason or 'already done'}]"), style="dim")
        for call in sp.calls:
            t.append("\n   - " + mask(call))
        for note in sp.notes:
            t.append("\n   note: " + mask(note), style="dim")
        for diff in sp.diffs:
            for line in diff.rstrip("\n").splitlines():
                said = mask(line)
                if width and line.startswith(("---", "+++")):  # `--- path` stays one line
                    said = middle_cut(Text(said), width - 3).plain
                t.append("\n   " + said, style=_diff_style(line))
    return t


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _diff_style(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "bold dim"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("@@"):
        return "cyan"
    return ""


class RunLog(VerticalScroll):
    """The run's log, newest at the bottom. A wait's status lines (`what: status`) update
    in place, so a long wait reads as one live line rather than scrolling the rest away."""

    MAX_LINES = 2000

    def __init__(self, mask: Callable[[str], str], **kw: Any) -> None:
        super().__init__(**kw)
        self.mask = mask
        self.lines: list[tuple[str, str]] = []  # (replace key, shown text)
        self.body = Static("", markup=False)

    def compose(self) -> Any:
        yield self.body

    def add(self, line: str, key: str = "") -> None:
        shown = self.mask(f"{time.strftime('%H:%M:%S')} {line}")
        if key and self.lines and self.lines[-1][0] == key:
            self.lines[-1] = (key, shown)
        else:
            self.lines.append((key, shown))
            del self.lines[: -self.MAX_LINES]
        self.body.update(Text("\n".join(text for _, text in self.lines), no_wrap=True, end=""))
        self.call_after_refresh(self.scroll_end, animate=False)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)
