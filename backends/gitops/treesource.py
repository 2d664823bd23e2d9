"""Where the Flux tree's files come from: a checkout on disk or a commit in a Git repository.

The console and `dapper-tui check` read the working tree; the lab's Flux twin reads the
tree at the head of its bare remote, as real Flux reads a GitRepository artifact. Both go
through this one small interface so the parser never knows which it is reading.

Paths are always POSIX, relative to the repository root, without a leading "./".
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class SourceError(Exception):
    """A file or directory cannot be read from the source; the message is one line."""


def norm(path: str) -> str:
    """Normalise a repo path: POSIX, no leading './' or '/', no '..' escaping the root."""
    p = posixpath.normpath(path.replace("\\", "/").lstrip("/"))
    if p == ".":
        return ""
    if p == ".." or p.startswith("../"):
        raise SourceError(f"{path}: points outside the repository")
    return p


class FileSource(Protocol):
    """Read-only view of a repository tree."""

    label: str  # for messages: a directory or "repo@commit"

    def read_bytes(self, path: str) -> bytes: ...
    def is_file(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]:
        """Names (not paths) of the entries of a directory, sorted."""
        ...


def read_text(source: FileSource, path: str) -> str:
    try:
        return source.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason})") from None


def exists(source: FileSource, path: str) -> bool:
    return source.is_file(path) or source.is_dir(path)


def walk(source: FileSource, top: str = "") -> Iterator[str]:
    """Every file path under `top`, depth first in sorted order (skips .git)."""
    top = norm(top)
    for name in source.listdir(top):
        if name == ".git":
            continue
        path = posixpath.join(top, name) if top else name
        if source.is_dir(path):
            yield from walk(source, path)
        else:
            yield path


class DirSource:
    """A checkout on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.label = str(self.root)

    def _full(self, path: str) -> Path:
        return self.root / norm(path)

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._full(path).read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{norm(path)}: no such file") from None
        except IsADirectoryError:
            raise SourceError(f"{norm(path)}: is a directory") from None
        except OSError as exc:
            raise SourceError(f"{norm(path)}: {exc.strerror}") from None

    def is_file(self, path: str) -> bool:
        try:
            return self._full(path).is_file()
        except SourceError:
            return False

    def is_dir(self, path: str) -> bool:
        try:
            return self._full(path).is_dir()
        except SourceError:
            return False

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(p.name for p in self._full(path).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            raise SourceError(f"{norm(path) or '.'}: no such directory") from None


class GitTreeSource:
    """The tree of one commit of a pygit2 repository (bare or not), never the work tree."""

    def __init__(self, repo: object, commitish: str = "HEAD") -> None:
        import pygit2  # only the lab and runbooks need it

        self._pygit2 = pygit2
        self.repo = repo
        commit = repo.revparse_single(commitish).peel(pygit2.Commit)  # type: ignore[attr-defined]
        self.commit_id = str(commit.id)
        self.tree = commit.tree
        self.label = f"{getattr(repo, 'path', 'repo')}@{self.commit_id[:12]}"

    def _obj(self, path: str) -> object | None:
        p = norm(path)
        if not p:
            return self.tree
        try:
            entry = self.tree[p]
        except KeyError:
            return None
        return self.repo[entry.id]  # type: ignore[index]

    def cache_key(self, path: str) -> str | None:
        """The file's blob id: equal ids, equal content (for caches across commits)."""
        p = norm(path)
        try:
            entry = self.tree[p] if p else None
        except (KeyError, SourceError):
            return None
        if entry is None or entry.type_str != "blob":
            return None
        return str(entry.id)

    def read_bytes(self, path: str) -> bytes:
        obj = self._obj(path)
        if not isinstance(obj, self._pygit2.Blob):
            raise SourceError(f"{norm(path)}: no such file at {self.commit_id[:12]}")
        return obj.data

    def is_file(self, path: str) -> bool:
        try:
            return isinstance(self._obj(path), self._pygit2.Blob)
        except SourceError:
            return False

    def is_dir(self, path: str) -> bool:
        try:
            return isinstance(self._obj(path), self._pygit2.Tree)
        except SourceError:
            return False

    def listdir(self, path: str) -> list[str]:
        obj = self._obj(path)
        if not isinstance(obj, self._pygit2.Tree):
            raise SourceError(f"{norm(path) or '.'}: no such directory at {self.commit_id[:12]}")
        return sorted(str(entry.name) for entry in obj)


def as_source(source_or_path: FileSource | str | Path) -> FileSource:
    if isinstance(source_or_path, (str, Path)):
        return DirSource(source_or_path)
    return source_or_path
