"""The append-only record of every run: one JSONL file per run under `state_dir()/runs/`.

It is what `resume` starts from and what an operator reads after an incident: who ran
what with which (redacted) parameters, on which host and repository HEAD, and each
step's start, end, result and outputs (commit ids, revisions; never secret values).
Each line is written and fsynced on its own, so a run killed mid-step leaves a file that
still reads back up to its last complete line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapper.backends.config import state_dir
from dapper.backends.private_files import open_private, private_dir

log = logging.getLogger(__name__)


def runs_dir(base: Path | None = None) -> Path:
    return (base or state_dir()) / "runs"


def new_run_id() -> str:
    """Sortable and unique: UTC time plus 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass
class RunRecord:
    """A run as read back from its journal."""

    run_id: str
    runbook: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    operator: str = ""
    host: str = ""
    repo: str = ""
    head: str = ""
    target: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    steps: dict[str, str] = field(default_factory=dict)  # step -> last phase
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> outputs
    reasons: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    ok: bool = False
    reason: str = ""
    path: Path | None = None

    @property
    def status(self) -> str:
        if self.finished:
            return "done" if self.ok else "failed"
        return "unfinished"

    def done(self, step: str) -> bool:
        return self.steps.get(step) in ("verified", "skipped")


class Journal:
    """Append-only writer for one run's file (created on the first `start`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, run_id: str, base: Path | None = None) -> Journal:
        d = runs_dir(base)
        private_dir(d.parent)
        private_dir(d)
        return cls(d / f"{run_id}.jsonl")

    @classmethod
    def open(cls, run_id: str, base: Path | None = None) -> Journal:
        path = runs_dir(base) / f"{run_id}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no run {run_id} in {path.parent}")
        return cls(path)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True)
        fd = open_private(self.path)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def start(
        self,
        *,
        run_id: str,
        runbook: str,
        params: dict[str, Any],
        operator: str,
        repo: str,
        head: str,
        target: dict[str, str] | None = None,
    ) -> None:
        self.append(
            {
                "type": "start",
                "run_id": run_id,
                "runbook": runbook,
                "params": params,
                "operator": operator,
                "host": socket.gethostname(),
                "repo": repo,
                "head": head,
                "target": target or {},
            }
        )

    def step(self, step: str, phase: str, **extra: Any) -> None:
        self.append({"type": "step", "step": step, "phase": phase, **extra})

    def end(self, ok: bool, reason: str = "") -> None:
        self.append({"type": "end", "ok": ok, "reason": reason})

    def read(self) -> RunRecord:
        return read_run(self.path)


class JournalError(Exception):
    """A journal file that cannot be read as one: one line naming the file and why."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path.name}: {why}")
        self.path = path
        self.reason = f"journal {path}: {why}"


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each record; a last line cut short by a crash ends it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JournalError(path, f"not UTF-8 (byte {exc.start})") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line]
    for index, (number, line) in enumerate(lines):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1:  # the line a crash cut short
                log.warning("%s: line %d is incomplete; ignoring it", path, number)
                return
            raise JournalError(path, f"line {number} is not JSON") from None
        if not isinstance(item, dict):
            raise JournalError(path, f"line {number} is not a JSON object")
        yield number, item


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "type": str,
    "runbook": str,
    "params": dict,
    "operator": str,
    "host": str,
    "repo": str,
    "head": str,
    "target": dict,
    "time": (int, float),
    "step": str,
    "phase": str,
    "outputs": dict,
    "reason": str,
}


def _checked(path: Path, number: int, item: dict[str, Any]) -> dict[str, Any]:
    """`item` when each known field has its type (null means absent), else JournalError."""
    for key, kind in _FIELD_TYPES.items():
        value = item.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise JournalError(path, f"line {number}: {key} has the wrong type")
    return item


def read_run(path: Path) -> RunRecord:
    """The run in `path`; JournalError when the file is not a journal we can trust."""
    rec = RunRecord(run_id=path.stem, path=path)
    for number, raw in _lines(path):
        item = _checked(path, number, raw)
        kind = item.get("type")
        if kind == "start":
            rec.runbook = item.get("runbook") or ""
            rec.params = item.get("params") or {}
            rec.operator = item.get("operator") or ""
            rec.host = item.get("host") or ""
            rec.repo = item.get("repo") or ""
            rec.head = item.get("head") or ""
            rec.target = item.get("target") or {}
            rec.started = item.get("time") or 0.0
        elif kind == "step":
            step = item.get("step") or ""
            rec.steps[step] = item.get("phase") or ""
            if item.get("outputs"):
                rec.outputs.setdefault(step, {}).update(item["outputs"])
            if item.get("reason"):
                rec.reasons[step] = item["reason"]
        elif kind == "resume":
            rec.finished = False
        elif kind == "end":
            rec.finished = True
            rec.ok = bool(item.get("ok"))
            rec.reason = item.get("reason") or ""
    return rec


def list_runs(base: Path | None = None, problems: list[str] | None = None) -> list[RunRecord]:
    """Every readable run, newest first. A malformed journal is skipped (logged, and one
    line per file added to `problems` when given), so it never hides the others."""
    d = runs_dir(base)
    if not d.is_dir():
        return []
    runs = []
    for path in d.glob("*.jsonl"):
        try:
            runs.append(read_run(path))
        except (JournalError, OSError) as exc:
            line = str(exc) if isinstance(exc, JournalError) else f"{path.name}: {exc.strerror}"
            log.warning("skipping journal %s", line)
            if problems is not None:
                problems.append(line)
    # ids sort by the second only; two runs in one second are ordered by their start
    runs.sort(key=lambda r: (r.started, r.run_id), reverse=True)
    return runs
