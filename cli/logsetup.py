"""Logging: always to a file under the state dir; to stderr only for non-console commands."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
from pathlib import Path

from dapper.backends.config import state_dir
from dapper.backends.private_files import open_private, private_dir


def log_path() -> Path:
    return state_dir() / "dapper-tui.log"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose every file is created 0600: logs name the cluster's insides."""

    def _open(self) -> io.TextIOWrapper:
        fd = open_private(Path(self.baseFilename))
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)


def not_a_hang_up(record: logging.LogRecord) -> bool:
    """False for asyncio's note that it wrote to a connection the peer had closed: the
    lab's Talos server says it for every client that stopped waiting (a console's sweep
    has a time budget), hundreds of lines on the lab's terminal. The log file keeps it."""
    return not (record.name == "asyncio" and str(record.msg).startswith("socket.send()"))


def setup_logging(*, console: bool = False, level: int = logging.INFO) -> Path:
    """Route every logger to the rotating log file; the console never shows a traceback."""
    path = log_path()
    private_dir(path.parent)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = PrivateRotatingFileHandler(path, maxBytes=5_000_000, backupCount=3)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.WARNING)
        stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        stream.addFilter(not_a_hang_up)
        root.addHandler(stream)
    # Library warnings (urllib3's InsecureRequestWarning on every unverified request) go to
    # the log like everything else, never onto the console's screen.
    logging.captureWarnings(True)
    for noisy in ("urllib3", "kubernetes", "hpack", "grpclib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
