"""One runbook at a time per repository: an fcntl lock on a file in the repo's .git dir.

The kernel drops the lock when the process dies, so a crashed run never leaves a stale
lock behind; the file only holds the run id of the holder, for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "dapper-runbook.lock"


class LockedError(RuntimeError):
    """Another run holds the repository; the message names it."""


class RepoLock:
    def __init__(self, git_dir: str | os.PathLike[str], run_id: str) -> None:
        self.path = Path(git_dir) / LOCK_NAME
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another run"
            os.close(fd)
            raise LockedError(
                f"repository is busy: runbook run {holder} holds {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, self.run_id.encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
