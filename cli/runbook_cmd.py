"""`dapper-tui runbook run|resume|list`: the runbook engine at a plain terminal.

Prints the engine's events as lines, shows the preview and asks before anything changes
(`--yes` skips the question, `--dry-run` stops after the preview). `list` and `run NAME
--help` describe the runbooks from their declarations (cli/runbook_params.py); required
parameters not passed with `--param` are asked for at a terminal. Typed secret values
are read with getpass, twice. Without a configuration the run happens on a freshly
started lab (its scratch clone, never your checkout), which is stopped afterwards; such
a run cannot be resumed later, so `resume` without a configuration is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dapper.cli.hangup import StopOnHangup
from dapper.cli.logsetup import setup_logging

if TYPE_CHECKING:
    from dapper.actions.engine import RunResult

log = logging.getLogger("dapper.cli.runbook")


class Printer:
    """Turns engine events into terminal lines. A terminal that went away (SIGHUP, a closed
    pipe) must not stop the run between a side effect and its journal entry: lines are
    then dropped (the log file keeps the run's story)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._skipped: set[str] = set()
        self.gone = False

    def __call__(self, event: Any) -> None:
        if self.gone:
            return
        try:
            self._print(event)
        except OSError:  # EIO after a hangup, EPIPE: the operator is no longer there
            self.gone = True

    def _print(self, event: Any) -> None:
        from dapper.actions.events import Kind, StepState

        step_state = event.state if event.kind == Kind.STEP else None
        if step_state == StepState.SKIPPED:
            self._skipped.add(event.step)
        elif step_state == StepState.DONE and event.step in self._skipped:
            return  # "skipped: already done" said it
        if event.kind == Kind.STEP and event.state in (
            StepState.RUNNING,
            StepState.SKIPPED,
            StepState.DONE,
            StepState.FAILED,
        ):
            tail = f": {event.message}" if event.message else ""
            self.out.write(f"[{event.step}] {event.state.value}{tail}\n")
        elif event.kind == Kind.PROGRESS:
            self.out.write(f"    {event.message}\n")
        elif event.kind == Kind.PREVIEW:
            self.out.write(event.data["preview"].text() + "\n")
        elif event.kind == Kind.RUN and event.data.get("resumed"):
            self.out.write(f"resuming run {event.run_id}\n")
        self.out.flush()


def _prompt(request: Any) -> str:
    if not sys.stdin.isatty():
        raise EOFError("no terminal to ask on")
    return getpass.getpass(f"{request.question}: ")


def _confirm(out: TextIO) -> Any:
    def confirm(preview: Any) -> bool:
        if not sys.stdin.isatty():
            out.write("not a terminal: pass --yes to go ahead\n")
            return False
        out.write("Go ahead? [y/N] ")
        out.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def _list_runbooks(out: TextIO) -> None:
    from dapper.actions import registry

    runbooks = registry.all_runbooks()
    width = max((len(rb.name) for rb in runbooks), default=0)
    out.write("runbooks (`dapper-tui runbook run NAME --help` shows one's parameters):\n")
    for rb in runbooks:
        tail = f": {rb.summary}" if rb.summary else ""
        out.write(f"  {rb.name:<{width}}  {rb.title}{tail}\n")
    out.write("\n")


def _list(base: Any, out: TextIO) -> int:
    from dapper.actions.journal import list_runs

    _list_runbooks(out)
    problems: list[str] = []
    runs = list_runs(base, problems)
    for line in problems:
        print(f"dapper-tui runbook: skipped unreadable journal {line}", file=sys.stderr)
    if not runs:
        out.write("no runbook runs yet\n")
        return 0
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
        done = sum(1 for s in r.steps if r.done(s))
        reason = f"  {r.reason}" if r.reason and r.reason != "done" else ""
        if r.status != "done" and r.repo and not Path(r.repo).exists():
            reason += "  (its lab is gone: not resumable)"
        out.write(
            f"{r.run_id}  {r.runbook:<14} {r.status:<10} {when}  {done} steps done"
            f"  {r.operator}{reason}\n"
        )
    return 0


def _why_not_resumable(run_id: str) -> str:
    """Why `resume RUN_ID` without a configuration cannot go on, in the run's own terms."""
    from dapper.actions.journal import Journal, JournalError

    try:
        record = Journal.open(run_id).read()
    except FileNotFoundError:
        return f"no run {run_id} (dapper-tui runbook list shows the runs)"
    except JournalError as exc:
        return exc.reason
    if record.repo and not Path(record.repo).exists():
        return (
            f"run {run_id} was made on a built-in lab that has stopped (its scratch clone "
            f"{record.repo} is gone); it cannot be resumed"
        )
    return (
        f"cannot resume {run_id} on a new lab (a lab's runs live in that lab's scratch clone "
        "and remote); pass the config it ran with: --config FILE"
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None, lab_dir: Any = None) -> int:
    out = out or sys.stdout
    setup_logging(console=False)
    from dapper.backends.config import ConfigError, load_config

    if args.runbook_command == "list":
        return _list(None, out)
    try:
        config = load_config(args.config, read_only=args.read_only or None)
    except ConfigError as exc:
        print(f"dapper-tui runbook: {exc}", file=sys.stderr)
        return 2
    if args.runbook_command == "run" and (args.help or not args.name):
        return _help(args.name, config, out)
    lab = None
    no_config = config.lab and not config.source  # a lab's own config.toml is a config
    if no_config and args.runbook_command == "resume":
        print(f"dapper-tui runbook: {_why_not_resumable(args.run_id)}", file=sys.stderr)
        return 2
    if no_config:
        from dapper.lab.runtime import start_lab

        lab = start_lab(directory=lab_dir)
        config = lab.readonly_config if config.read_only else lab.config
        out.write(f"no configuration: running on a fresh lab; repository {config.repo_path}\n")
    try:
        return _run(args, config, out)
    finally:
        if lab is not None:
            lab.stop()


def _help(name: str | None, config: Any, out: TextIO) -> int:
    """`runbook run [NAME] --help`: one runbook described (with the choices its pickers
    offer when a configuration names the repository), or the list of runbooks."""
    from dapper.actions import registry
    from dapper.actions.params import ChoiceContext
    from dapper.cli.runbook_params import describe

    if not name:
        _list_runbooks(out)
        return 0
    try:
        runbook = registry.get(name)
    except registry.UnknownRunbook as exc:
        print(f"dapper-tui runbook: {exc}", file=sys.stderr)
        return 2
    has_repo = bool(config.repo_path) and not (config.lab and not config.source)
    describe(runbook, out, ChoiceContext.of(config) if has_repo else None)
    return 0


def _run(args: argparse.Namespace, config: Any, out: TextIO) -> int:
    from dapper.actions.engine import Engine

    hangup = StopOnHangup()
    engine = Engine(config, emit=Printer(out), prompt=_prompt, cancelled=hangup.stopping)
    confirm = _confirm(out)
    with hangup:
        result = _start(args, config, out, engine, confirm)
    if isinstance(result, int):
        return result
    if result.cancelled and hangup.signal_name:
        resumable = result.reason.startswith("aborted at")
        _say(
            f"run {result.run_id}: stopped on {hangup.signal_name} at a safe point; resume it "
            f"with: dapper-tui runbook resume {result.run_id}"
            if resumable
            else f"run {result.run_id}: stopped on {hangup.signal_name}: nothing changed"
        )
        return 128 + int(getattr(signal, hangup.signal_name))
    if result.ok:
        out.write(f"run {result.run_id}: {result.reason}\n")
        return 0
    _say(f"run {result.run_id}: {result.reason}")
    return 1


def _say(line: str) -> None:
    """A line on stderr, if there still is a terminal to say it on."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def _start(
    args: argparse.Namespace, config: Any, out: TextIO, engine: Any, confirm: Any
) -> RunResult | int:
    """The run's result, or the exit code when it could not start (said in one line)."""
    from dapper.actions import registry
    from dapper.actions.journal import Journal, JournalError
    from dapper.actions.params import ChoiceContext, ParamError, parse_pairs, resolve
    from dapper.backends.errors import ReadOnlyError
    from dapper.cli.runbook_params import MissingParams, complete

    try:
        if args.runbook_command == "resume":
            try:
                record = Journal.open(args.run_id).read()
            except FileNotFoundError as exc:
                print(f"dapper-tui runbook: {exc}", file=sys.stderr)
                return 2
            except JournalError as exc:
                print(f"dapper-tui runbook: {exc.reason}", file=sys.stderr)
                return 2
            result = engine.resume(
                args.run_id, registry.get(record.runbook), confirm=confirm, yes=args.yes
            )
        else:
            runbook = registry.get(args.name)
            context = ChoiceContext.of(config)
            try:
                given = complete(runbook, parse_pairs(args.param), out, context)
            except MissingParams as exc:
                out.write(f"{exc}\n")
                return 2
            resolve(runbook.params, given)  # one clear line (exit 2) before anything starts
            result = engine.run(runbook, given, confirm=confirm, yes=args.yes, dry_run=args.dry_run)
    except (ParamError, registry.UnknownRunbook) as exc:
        print(f"dapper-tui runbook: {exc}", file=sys.stderr)
        return 2
    except EOFError as exc:
        print(f"dapper-tui runbook: {exc}", file=sys.stderr)
        return 2
    except ReadOnlyError as exc:
        print(f"dapper-tui runbook: {exc.reason}", file=sys.stderr)
        return 1
    return result
