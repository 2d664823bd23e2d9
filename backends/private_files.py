"""Directories and files only the operator may read: state, journals and logs.

Journals and logs name clusters, nodes and operators; a shared machine's other users
have no business reading them, so directories are 0700 and files 0600 whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make `path` itself 0700; returns it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND | os.O_CREAT) -> int:
    """An fd on `path` created 0600 (an existing file is narrowed to 0600 too)."""
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd
