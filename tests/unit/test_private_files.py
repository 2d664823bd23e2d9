"""Logs, journals and the state directories are the operator's alone: 0600 and 0700."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from dapper.actions.journal import Journal
from dapper.backends.config import state_dir
from dapper.cli.logsetup import setup_logging


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_log_file_and_state_dir_are_private() -> None:
    old = os.umask(0o022)
    try:
        path = setup_logging()
        logging.getLogger("dapper.test").warning("a line")
        assert mode(path) == 0o600
        assert mode(state_dir()) == 0o700
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        handler.doRollover()  # a rotated-in file is private too
        logging.getLogger("dapper.test").warning("after rotation")
        assert mode(path) == 0o600
        assert mode(path.with_name(path.name + ".1")) == 0o600
    finally:
        os.umask(old)
        logging.getLogger().handlers.clear()


def test_an_existing_wide_log_is_narrowed() -> None:
    state_dir().mkdir(parents=True, mode=0o755)
    os.chmod(state_dir(), 0o755)
    path = state_dir() / "dapper-tui.log"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    try:
        setup_logging()
        logging.getLogger("dapper.test").warning("a line")
        assert mode(path) == 0o600 and mode(state_dir()) == 0o700
    finally:
        logging.getLogger().handlers.clear()


def test_journal_files_and_dirs_are_private() -> None:
    journal = Journal.create("run-1")
    journal.append({"event": "x"})
    assert mode(journal.path) == 0o600
    assert mode(journal.path.parent) == 0o700
    assert mode(state_dir()) == 0o700
