"""One runbook run in the console: the engine in a worker thread, this screen showing it.

Steps with their state, the preview (masked diff and API calls) with Confirm / Abort, the
progress of waits, a log and the result line. Nothing changes before Confirm; Abort at
the preview changes nothing, and Abort during the run stops at the next step or wait
poll, leaving the run resumable. A typed secret value is asked in a masked field.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dapper.tui.screens.confirm import ConfirmScreen
from dapper.tui.survive import SurvivesErrors
from dapper.tui.widgets.runbook_view import (
    ConfirmAsked,
    EngineEvent,
    PromptAsked,
    RunBridge,
    RunEnded,
    RunLog,
    StepBoard,
    preview_text,
)
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Static

log = logging.getLogger("dapper.tui.runbook")


class RunsInFlight:
    """Engine threads still working. When the console goes away (q, SIGHUP from a dropped
    SSH session) a run is told to stop at its next safe point; the process waits for that
    (`wait`) instead of ending the thread between a change and its journal entry."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *_exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait(self, timeout: float) -> bool:
        """True once no run is in flight; False if one still is after `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout=timeout)


IN_FLIGHT = RunsInFlight()

NARROW = 110  # below this width the run view stacks preview over log


def _same(text: str) -> str:
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- the typed-value prompt ------------------------------------------------------------------


class PromptScreen(SurvivesErrors, ModalScreen[str | None]):
    """One question from the engine; a secret answer is typed into a masked field."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, request: Any) -> None:
        super().__init__(classes="dialog-screen")
        self.request = request

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.request.question, style="bold"), classes="dialog-title")
            note = "Masked; never shown or logged. Esc stops the run (it stays resumable)."
            yield Static(Text(note, style="dim"), classes="dialog-body")
            yield Input(password=self.request.secret, id="answer")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("OK", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#answer", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.dismiss(self.query_one("#answer", Input).value)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- one run -----------------------------------------------------------------------------------


class RunScreen(SurvivesErrors, Screen[bool]):
    """One run of a runbook (new or resumed) driven by the engine in a worker thread."""

    DEFAULT_CSS = """
    RunScreen #run-title, RunScreen #run-result { height: 1; padding: 0 1; }
    RunScreen #run-steps {
        height: auto; max-height: 40%; border: round $panel-lighten-2; padding: 0 1;
        text-wrap: nowrap; text-overflow: ellipsis; overflow-y: auto;
    }
    RunScreen #run-body { height: 1fr; }
    RunScreen #run-left { width: 3fr; height: 1fr; }
    RunScreen #run-log { width: 2fr; height: 1fr; border: round $panel-lighten-2; }
    RunScreen #run-preview-scroll { height: 1fr; border: round $panel-lighten-2; padding: 0 1; }
    RunScreen #run-buttons { height: auto; align-horizontal: right; }
    RunScreen #run-buttons Button { margin-left: 2; }
    RunScreen.narrow #run-steps { max-height: 30%; }
    RunScreen.narrow #run-body { layout: vertical; }
    RunScreen.narrow #run-left { width: 1fr; height: 1fr; }
    RunScreen.narrow #run-log { width: 1fr; height: 7; }
    RunScreen.narrow.asking #run-log { display: none; }
    RunScreen.asking #run-preview-scroll { border: thick $warning; }
    """
    BINDINGS = [
        Binding("y", "confirm", "Confirm"),
        Binding("enter", "confirm", "Confirm", show=False),
        Binding("n,a", "abort", "Abort"),
        Binding("escape", "back", "Back"),
        Binding("q", "quit_guard", "Quit", show=False),
    ]
    # Every displayed line passes through `mask` (identity): snapshot tests mask run ids,
    # commit ids and times here.
    mask = staticmethod(_same)

    def __init__(
        self,
        config: Any,
        runbook: str,
        *,
        given: dict[str, Any] | None = None,
        resume: str = "",
        dry_run: bool = False,
    ) -> None:
        super().__init__(id="run")
        self.config = config
        self.runbook = runbook
        self.given = dict(given or {})
        self.resume_id = resume
        self.dry_run = dry_run
        self.run_id = resume
        self.phase = "checking"  # checking -> asking -> running -> finished
        self.result: Any = None
        self.error = ""
        self.bridge = RunBridge(self.post_message)
        self.board = StepBoard(self.mask, id="run-steps")
        self.run_log = RunLog(self.mask, id="run-log")

    @property
    def finished(self) -> bool:
        return self.phase == "finished"

    def compose(self) -> ComposeResult:
        self._narrow(self.app.size.width)
        yield Static(id="run-title")
        self.board.border_title = "Steps"
        yield self.board
        with Horizontal(id="run-body"):
            with Vertical(id="run-left"):
                scroll = VerticalScroll(id="run-preview-scroll")
                scroll.border_title = "Preview (secrets masked)"
                with scroll:
                    yield Static(Text("checking every step…", style="dim"), id="run-preview")
                with Horizontal(id="run-buttons"):
                    yield Button("Abort (n)", id="abort", variant="error", compact=True)
                    yield Button(
                        "Confirm (y)", id="confirm", variant="warning", disabled=True, compact=True
                    )
            self.run_log.border_title = "Log"
            yield self.run_log
        yield Static(id="run-result")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._paint_title()
        self.query_one("#run-preview-scroll").focus()
        what = f"resuming run {self.resume_id}" if self.resume_id else f"starting {self.runbook}"
        self._log(what + (" (dry run: read-only)" if self.dry_run else ""))
        self.run_worker(self._work, thread=True, name="runbook", exit_on_error=False)

    def on_resize(self, event: Resize) -> None:
        self._narrow(event.size.width)

    def _narrow(self, width: int) -> None:
        self.set_class(width < NARROW, "narrow")
        self.board.set_compact(width < NARROW)

    def on_unmount(self) -> None:
        if not self.finished:
            self.bridge.abort()  # the engine stops at its next checkpoint; resumable

    # -- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        with IN_FLIGHT:
            self._run_engine()

    def _run_engine(self) -> None:
        from dapper.actions import registry
        from dapper.actions.protocols import runner_for
        from dapper.backends.errors import ReadOnlyError

        b = self.bridge
        try:
            engine = runner_for(self.config, emit=b.emit, prompt=b.prompt, cancelled=b.cancelled)
            rb = registry.get(self.runbook)
            if self.resume_id:
                result = engine.resume(self.resume_id, rb, confirm=b.confirm)
            else:
                result = engine.run(rb, self.given, confirm=b.confirm, dry_run=self.dry_run)
        except ReadOnlyError as exc:
            b.send(RunEnded(error=exc.reason))
        except Exception as exc:  # a bug or an unexpected backend failure: one line, logged
            log.exception("runbook %s crashed", self.runbook)
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            b.send(RunEnded(error=f"internal error: {_one_line(reason)}"))
        else:
            b.send(RunEnded(result=result))

    # -- what the engine says --------------------------------------------------------------

    def on_engine_event(self, message: EngineEvent) -> None:
        e = message.event
        kind = str(e.kind)
        if kind == "run":
            self.run_id = e.run_id
            self._paint_title()
            if e.data.get("resumed"):
                self._log(f"run {e.run_id} resumed")
        elif kind == "step":
            state = str(e.state)
            self.board.step_event(e.step, state, e.message)
            skipped = self.board.rows[e.step].skipped
            quiet = (
                state == "checking"
                or (state == "pending" and (self.phase == "checking" or not e.message))
                or state == "verifying"
                or (skipped and state == "done")
            )
            if not quiet:
                tail = f": {e.message}" if e.message else ""
                self._log(f"[{e.step}] {self.board.shown_state(e.step)}{tail}")
        elif kind == "progress":
            self.board.progress(e.step, e.message)
            what, sep, _status = e.message.partition(": ")
            self._log(f"    {e.message}", f"{e.step}|{what}" if sep else "")
        elif kind == "preview":
            preview = e.data["preview"]
            self.board.set_titles(preview)
            width = self.query_one("#run-preview-scroll").content_size.width
            self.query_one("#run-preview", Static).update(
                preview_text(preview, self.mask, max(0, width - 1))
            )
        elif kind == "finished":
            self._log(f"finished: {e.message}")

    def on_confirm_asked(self, _message: ConfirmAsked) -> None:
        self.phase = "asking"
        self.add_class("asking")
        self.query_one("#confirm", Button).disabled = False
        self.query_one("#run-preview-scroll").focus()  # arrows scroll the diff; y/enter go
        self._paint_title()
        self._log("preview ready: y/enter confirms, n/esc aborts (nothing changed yet)")
        self.refresh_bindings()

    def on_prompt_asked(self, message: PromptAsked) -> None:
        def answered(value: str | None) -> None:
            self.bridge.answer(value)

        self.app.push_screen(PromptScreen(message.request), callback=answered)

    def on_run_ended(self, message: RunEnded) -> None:
        self.phase = "finished"
        self.remove_class("asking")
        self.result, self.error = message.result, message.error
        self.query_one("#run-buttons").display = False
        self.query_one("#run-result", Static).update(self._result_text())
        self._paint_title()
        self.refresh_bindings()
        self.query_one("#run-preview-scroll").focus()
        refresh = getattr(self.app, "refresh_source", None)
        if refresh is not None and self.result is not None and not self.dry_run:
            refresh("kubernetes")

    # -- painting --------------------------------------------------------------------------

    def _log(self, line: str, key: str = "") -> None:
        self.run_log.add(line, key)

    def _state_word(self) -> tuple[str, str]:
        if self.phase == "checking":
            return "checking (nothing changes yet)", "cyan"
        if self.phase == "asking":
            return "waiting for your go-ahead", "bold yellow"
        if self.phase == "running":
            return "running", "bold yellow"
        r = self.result
        if r is None:
            return "could not run", "bold red"
        if r.ok:
            return ("dry run" if r.dry_run else "done"), "green"
        return ("aborted" if r.cancelled else "failed"), "bold red"

    def _paint_title(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        t.append(f" Runbook {self.runbook} ", style="bold reverse")
        if self.run_id:
            t.append(self.mask(f"  run {self.run_id}"))
        word, style = self._state_word()
        t.append("  ")
        t.append(word, style=style)
        if self.dry_run:
            t.append("  ")
            t.append(" READ-ONLY: dry run ", style="bold reverse magenta")
        self.query_one("#run-title", Static).update(t)

    def _result_text(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        r = self.result
        if r is None:
            t.append(f"✗ {_one_line(self.error)}", style="bold red")
            return t
        if r.ok:
            t.append(f"✓ {r.reason}", style="bold green")
        else:
            t.append(f"✗ {_one_line(r.reason)}", style="bold red")
        if self.run_id and not r.dry_run and not (r.cancelled and not r.outputs):
            t.append(self.mask(f"   run {self.run_id}"))
        sha = (r.outputs.get("commit") or {}).get("sha") or (r.outputs.get("push") or {}).get("sha")
        if sha:
            t.append(self.mask(f"   commit {sha[:12]}"))
        if not r.ok and not r.dry_run and r.outputs:
            t.append("  (resumable: esc, then r on the run)", style="dim")
        t.append("   esc: back", style="dim")
        return t

    # -- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self.phase == "asking"
        if action == "abort":
            return self.phase in ("checking", "asking", "running")
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        elif event.button.id == "abort":
            self.action_abort()

    def action_confirm(self) -> None:
        if self.phase != "asking":
            return
        self.phase = "running"
        self.remove_class("asking")
        self.query_one("#confirm", Button).disabled = True
        self._paint_title()
        self._log("confirmed: running")
        self.bridge.answer(True)
        self.refresh_bindings()

    def action_abort(self) -> None:
        if self.phase == "asking":
            self.phase = "running"  # until the engine returns "cancelled"
            self.remove_class("asking")
            self._log("aborted at the preview: nothing changes")
            self.bridge.answer(False)
        elif self.phase in ("checking", "running"):
            if self.bridge.cancelled():
                return
            self._log("abort requested: stopping at the next step or wait; the run stays resumable")
            self.bridge.abort()
            self.query_one("#abort", Button).disabled = True
        self.refresh_bindings()

    def action_back(self) -> None:
        if self.phase == "asking":
            self.action_abort()
        elif self.finished:
            self.dismiss(bool(self.result is not None and self.result.ok))
        else:
            self.notify("a runbook is running: a aborts it (it stays resumable)", timeout=4)

    def action_quit_guard(self) -> None:
        if self.finished:
            self.app.action_quit_app()  # type: ignore[attr-defined]
            return
        body = Text("The run stops at its next step or wait and can be resumed later.")

        def answered(ok: bool | None) -> None:
            if ok:
                self.bridge.abort()
                self.app.exit(0)

        self.app.push_screen(
            ConfirmScreen("Quit while a runbook runs?", body, "Quit"), callback=answered
        )
