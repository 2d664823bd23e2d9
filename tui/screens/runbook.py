"""Runbooks from the console (`b`, or the palette's "Runbook: ..." commands).

`RunbooksScreen` picks a runbook, shows its parameter form and the journal's runs (newest
first; `r` resumes one that did not finish); `RunScreen` (runbook_run.py) runs it.
Nothing changes before the operator confirms the preview. In read-only mode the same
screens only preview (dry run); the engine refuses anything else on its own too. The
screens call the engine and the registry only: no Git, YAML or SOPS code lives here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from dapper.tui.screens.runbook_run import PromptScreen, RunScreen
from dapper.tui.survive import SurvivesErrors
from dapper.tui.widgets.runbook_form import FormError, ParamForm
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

if TYPE_CHECKING:
    from dapper.actions.engine import Runbook
    from dapper.actions.params import ChoiceContext, ChoiceList

log = logging.getLogger("dapper.tui.runbook")


def engine_config(app: Any) -> Any | None:
    """The configuration runbooks run with: the connected Collector's (the lab's, when the
    console started one), else the app's own when it names a repository."""
    cfg: Any = getattr(getattr(app, "collector", None), "config", None)
    if cfg is not None and cfg.repo_path:
        return cfg
    return app.config if app.config.repo_path else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- entry points used by the app ----------------------------------------------------------


def open_runbooks(
    app: Any, runbook: str = "", resume: str = "", values: dict[str, str] | None = None
) -> None:
    """Show the runbooks screen (once), optionally on one runbook (its form preset with
    `values`, e.g. the node a row action names) or resuming a run."""
    for screen in app.screen_stack:
        if isinstance(screen, RunScreen) and not screen.finished:
            app.notify("a runbook is running: finish or abort it first", severity="warning")
            return
    if isinstance(app.screen, RunbooksScreen) and not (runbook or resume):
        return
    while isinstance(app.screen, (RunbooksScreen, RunScreen)):
        app.pop_screen()
    app.push_screen(
        RunbooksScreen(writable=app.writable, runbook=runbook, resume=resume, values=values)
    )


def palette_entries(app: Any) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    """Palette commands: one per runbook, and one per run that can be resumed."""
    how = "opens its form; nothing changes before you confirm the preview"
    if not app.writable:
        how = "read-only: preview only (dry run)"
    from dapper.actions import registry

    for rb in registry.all_runbooks():
        words = rb.title or rb.name
        yield f"Runbook: {words}", how, partial(open_runbooks, app, runbook=rb.name)
    yield "Runbooks: list runs", "b", lambda: open_runbooks(app)
    if not app.writable:
        return
    from dapper.actions.journal import list_runs

    try:
        runs = list_runs()
    except OSError:
        log.warning("cannot read the runbook journal", exc_info=True)
        return
    for r in runs:
        if r.status != "done" and r.runbook:
            yield (
                f"Runbook: resume {r.run_id}",
                f"{r.runbook}, {r.status}",
                partial(open_runbooks, app, resume=r.run_id),
            )


# -- pick a runbook, fill its form, list runs ------------------------------------------------


class RunbooksScreen(SurvivesErrors, Screen):
    DEFAULT_CSS = """
    RunbooksScreen #rb-title, RunbooksScreen #rb-about { height: 1; padding: 0 1; }
    RunbooksScreen #rb-body { height: 1fr; }
    RunbooksScreen #rb-list { width: 24; height: 1fr; border: round $panel-lighten-2; }
    RunbooksScreen #rb-right { width: 1fr; height: 1fr; border: round $panel-lighten-2; }
    RunbooksScreen #rb-holder { height: 1fr; }
    RunbooksScreen #rb-buttons { height: auto; padding: 0 1; }
    RunbooksScreen #rb-runs { height: auto; max-height: 9; border: round $panel-lighten-2; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+s", "start", "Start"),
        Binding("r", "resume", "Resume run"),
    ]

    def __init__(
        self,
        *,
        writable: bool,
        runbook: str = "",
        resume: str = "",
        values: dict[str, str] | None = None,
    ) -> None:
        super().__init__(id="runbooks")
        self.writable = writable
        self.initial = runbook
        self.preset = dict(values or {})
        self.resume_id = resume
        self.config: Any = None
        self.runbooks: dict[str, Runbook] = {}
        self.choices: dict[str, dict[str, ChoiceList]] = {}  # runbook -> param -> choices
        self.runs: dict[str, Any] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="rb-title")
        with Horizontal(id="rb-body"):
            rb_list = OptionList(id="rb-list")
            rb_list.border_title = "Runbooks"
            yield rb_list
            with Vertical(id="rb-right"):
                yield Static(Text("loading…", style="dim"), id="rb-about")
                yield Vertical(id="rb-holder")
                with Horizontal(id="rb-buttons"):
                    label = "Start (preview first)" if self.writable else "Preview (dry run)"
                    yield Button(label, id="start", variant="primary", disabled=True)
        runs: DataTable[Any] = DataTable(id="rb-runs", cursor_type="row")
        runs.border_title = "Runs (newest first; r resumes one that did not finish)"
        runs.add_columns("RUN", "RUNBOOK", "STATUS", "STARTED", "STEPS", "OPERATOR", "REASON")
        yield runs
        yield Footer(compact=True)

    def _title(self) -> Text:
        t = Text(" Runbooks ", style="bold reverse", no_wrap=True, overflow="ellipsis")
        if not self.writable:
            t.append("  ")
            t.append(" READ-ONLY ", style="bold reverse magenta")
            t.append("  preview only: nothing can change from here", style="dim")
        else:
            t.append("  each run shows its preview and changes nothing until you confirm")
        return t

    def on_mount(self) -> None:
        self._try_load()

    def _try_load(self) -> None:
        self.config = engine_config(self.app)
        if self.config is None:
            about = "not connected yet: runbooks need the repository (the lab may be starting)"
            self.query_one("#rb-about", Static).update(Text(about, style="yellow"))
            self.set_timer(1.0, self._try_load)
            return
        context = self._choice_context()
        self.run_worker(
            partial(self._load, context), thread=True, name="runbooks-load", exit_on_error=False
        )

    def _choice_context(self) -> ChoiceContext:
        """What providers may read: the repository and the console's latest snapshot
        (immutable, so a worker thread may read it). Built on the UI thread."""
        from dapper.actions.params import ChoiceContext

        return ChoiceContext.of(self.config, snapshot=getattr(self.app, "snapshot", None))

    def _load(
        self, context: ChoiceContext
    ) -> tuple[dict[str, Runbook], dict[str, dict[str, ChoiceList]], list[Any], list[str]]:
        """Worker thread: the runbooks, the choices of their pickers (plain data; a failing
        provider becomes its one-line reason), the journal's runs and unreadable journals."""
        from dapper.actions import registry
        from dapper.actions.journal import list_runs
        from dapper.actions.params import preload_choices

        runbooks = {rb.name: rb for rb in registry.all_runbooks()}
        cache: dict[int, ChoiceList] = {}
        choices = {n: preload_choices(rb.params, context, cache) for n, rb in runbooks.items()}
        for name, found in choices.items():
            for param, loaded in found.items():
                if loaded.error:
                    log.warning("choices of %s %s: %s", name, param, loaded.error)
        problems: list[str] = []
        runs = list_runs(problems=problems)
        return runbooks, choices, runs, problems

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "runbooks-load":
            return
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            log.error("loading runbooks failed", exc_info=err)
            reason = getattr(err, "reason", "") or str(err) or type(err).__name__
            self.query_one("#rb-about", Static).update(
                Text(f"cannot load runbooks: {_one_line(reason)}", style="bold red")
            )
        elif event.state == WorkerState.SUCCESS and event.worker.result is not None:
            self.runbooks, self.choices, runs, problems = event.worker.result
            self._loaded(runs)
            self._skipped(problems)

    def _loaded(self, runs: list[Any]) -> None:
        self.loaded = True
        rb_list = self.query_one("#rb-list", OptionList)
        for name, rb in self.runbooks.items():
            rb_list.add_option(Option(Text.assemble((name, "bold"), "\n", (rb.title, "dim")), name))
        names = list(self.runbooks)
        rb_list.highlighted = names.index(self.initial) if self.initial in names else 0
        self._show_runs(runs)
        self.query_one("#start", Button).disabled = False
        if self.initial:
            self.call_after_refresh(self._focus_form)
        else:
            rb_list.focus()
        if self.resume_id:
            rid, self.resume_id = self.resume_id, ""
            self._resume(rid)

    def _focus_form(self) -> None:
        form = self.form
        if form is not None:
            focusable = [w for w in form.query("*") if w.can_focus]
            if focusable:
                focusable[0].focus()

    @on(OptionList.OptionHighlighted, "#rb-list")
    async def _runbook_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        name = str(event.option.id)
        rb = self.runbooks.get(name)
        form = self.form
        if rb is None or (form is not None and form.runbook.name == name):
            return
        holder = self.query_one("#rb-holder", Vertical)
        await holder.remove_children()
        preset = self.preset if name == self.initial else {}
        form = ParamForm(
            rb, self.choices.get(name), self._choice_context(), preset=preset, id="rb-form"
        )
        await holder.mount(form)
        about = Text.assemble(
            (f"{name}: ", "bold"), rb.summary or rb.title, no_wrap=True, overflow="ellipsis"
        )
        for problem in form.problems():
            about.append(f"  {_one_line(problem)}", style="bold red")
        self.query_one("#rb-about", Static).update(about)
        self.query_one("#rb-right").border_title = f"Parameters of {name}"

    @on(OptionList.OptionSelected, "#rb-list")
    def _runbook_selected(self, _event: OptionList.OptionSelected) -> None:
        self._focus_form()

    @property
    def form(self) -> ParamForm | None:
        found = self.query("#rb-form")
        return found.first() if found else None  # type: ignore[return-value]

    def _show_runs(self, runs: list[Any]) -> None:
        table = self.query_one("#rb-runs", DataTable)
        table.clear()
        self.runs = {r.run_id: r for r in runs}
        mask = RunScreen.mask
        for r in runs:
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)) if r.started else ""
            )
            done = sum(1 for s in r.steps if r.done(s))
            style = {"done": "green", "failed": "bold red"}.get(r.status, "yellow")
            reason = "" if r.reason == "done" else _one_line(r.reason)
            table.add_row(
                mask(r.run_id),
                r.runbook,
                Text(r.status, style=style),
                mask(when),
                str(done),
                r.operator,
                mask(reason),
                key=r.run_id,
            )

    def reload_runs(self) -> None:
        from dapper.actions.journal import list_runs

        problems: list[str] = []
        try:
            self._show_runs(list_runs(problems=problems))
        except OSError:
            log.warning("cannot read the runbook journal", exc_info=True)
        self._skipped(problems)

    def _skipped(self, problems: list[str]) -> None:
        """One line for journals that could not be read; the other runs are listed."""
        if not problems:
            return
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        self.notify(
            f"skipped unreadable journal {_one_line(problems[0])}{more}",
            severity="warning",
            markup=False,
        )

    # -- actions ---------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            event.stop()
            self.action_start()

    def action_start(self) -> None:
        form = self.form
        if not self.loaded or form is None:
            return
        from dapper.actions.params import ParamError, resolve

        try:
            given = form.given()
            resolve(form.runbook.params, given)  # one clear line now rather than in the run
        except (FormError, ParamError) as exc:
            self.notify(str(exc), severity="error", timeout=5)
            return
        screen = RunScreen(self.config, form.runbook.name, given=given, dry_run=not self.writable)
        self.app.push_screen(screen, callback=lambda _r: self.reload_runs())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.writable if action == "resume" else True

    def action_resume(self) -> None:
        table = self.query_one("#rb-runs", DataTable)
        if not table.row_count:
            self.notify("no runs yet", timeout=3)
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self._resume(str(key))

    def _resume(self, run_id: str) -> None:
        record = self.runs.get(run_id)
        if record is None:
            self.notify(f"no run {run_id} in the journal", severity="warning", timeout=4)
            return
        if record.status == "done":
            self.notify(f"run {run_id} already finished", timeout=4)
            return
        if not self.writable:
            self.notify("read-only: runs cannot be resumed here", severity="warning", timeout=4)
            return
        screen = RunScreen(self.config, record.runbook, resume=run_id)
        self.app.push_screen(screen, callback=lambda _r: self.reload_runs())

    def action_back(self) -> None:
        self.dismiss()


__all__ = ["PromptScreen", "RunScreen", "RunbooksScreen", "open_runbooks", "palette_entries"]
