"""Logging: always to a file under the state dir; to stderr only for non-console commands."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from dapper.backends.config import state_dir


def log_path() -> Path:
    return state_dir() / "dapper-tui.log"


def setup_logging(*, console: bool = False, level: int = logging.INFO) -> Path:
    """Route every logger to the rotating log file; the console never shows a traceback."""
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.WARNING)
        stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(stream)
    for noisy in ("urllib3", "kubernetes", "hpack", "grpclib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
