"""YAML documents of the Flux tree, parsed once, with the file and line each came from.

ruamel's round-trip loader (YAML 1.2, as go-yaml v3 and sops read it) keeps line numbers
for error messages. Parsed documents are turned into plain dicts and lists; strings that
were plain (unquoted) scalars are marked `Plain`, so that after Flux's `${VAR}`
substitution a value like `replicas: ${N}` can be re-typed the way Flux re-parses it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from dapper.backends.gitops.treesource import FileSource, SourceError, read_text
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError


class Plain(str):
    """A string that was an unquoted YAML scalar (may be re-typed after substitution)."""

    __slots__ = ()


class TreeError(Exception):
    """A problem located in the tree: `file:line: reason`, one line."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}" if file else reason)
        self.file = file
        self.line = line
        self.reason = reason


@dataclass
class Doc:
    """One Kubernetes object and where it came from (line is 1-based, 0 when generated)."""

    obj: dict[str, Any]
    file: str
    line: int
    needs_hash: bool = False  # kustomize generator output that gets a content-hash suffix
    extra: dict[str, Any] = field(default_factory=dict)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.allow_duplicate_keys = False
    return y


def to_plain(node: Any) -> Any:
    """ruamel round-trip node -> plain Python (Plain marks unquoted strings)."""
    if isinstance(node, dict):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return Plain(node) if type(node) is str else str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (_dt.datetime, _dt.date)):
        return Plain(node.isoformat())
    return node


def strip_markers(node: Any) -> Any:
    """Plain -> str everywhere, so results are ordinary JSON-like data."""
    if isinstance(node, dict):
        return {k: strip_markers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [strip_markers(v) for v in node]
    if type(node) is Plain:
        return str(node)
    return node


def clone(node: Any) -> Any:
    """Deep copy of plain data (strings are immutable and shared)."""
    if isinstance(node, dict):
        return {k: clone(v) for k, v in node.items()}
    if isinstance(node, list):
        return [clone(v) for v in node]
    return node


_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9]*)$")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+$")
_OCT_RE = re.compile(r"0o[0-7]+$")
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def resolve_plain(text: str) -> Any:
    """Type of an unquoted scalar under the YAML 1.2 core schema."""
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT_RE.match(text):
        return int(text)
    if _HEX_RE.match(text):
        return int(text, 16)
    if _OCT_RE.match(text):
        return int(text[2:], 8)
    if _FLOAT_RE.match(text):
        return float(text)
    return Plain(text)


def parse_text(text: str, file: str) -> list[tuple[Any, int]]:
    """All documents of a YAML text as (plain data, 1-based start line); raises TreeError."""
    try:
        docs = list(_yaml().load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = (exc.problem or exc.context or "malformed YAML").strip()
        raise TreeError(file, line, f"malformed YAML: {reason}") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "malformed YAML"
        raise TreeError(file, 1, f"malformed YAML: {first}") from None
    out: list[tuple[Any, int]] = []
    for doc in docs:
        line = 1
        if isinstance(doc, (CommentedMap, CommentedSeq)) and getattr(doc, "lc", None):
            line = (doc.lc.line or 0) + 1
        out.append((to_plain(doc), line))
    return out


Parsed = list[tuple[Any, int]]


class ParseCache:
    """Parsed files shared by every tree of the process, keyed by content identity.

    Parsing dominates loading a tree, and consecutive commits (or refreshes of a checkout)
    share almost every file, so a file is parsed once per content, not once per tree.
    Entries are read-only (callers copy before changing); least recently used go first.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Parsed | TreeError] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Parsed | TreeError | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, key: Hashable, value: Parsed | TreeError) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


SHARED_PARSES = ParseCache()


def content_key(source: FileSource, path: str, text: str | None = None) -> Hashable | None:
    """What identifies a file's content: the source's own key (a Git blob id), else a
    digest of its text (mtimes are too coarse to trust for a rewrite of equal size)."""
    own = getattr(source, "cache_key", None)
    if own is not None:
        key = own(path)
        if key is not None:
            return (path, key)
    if text is None:
        return None
    return (path, "sha1", hashlib.sha1(text.encode(), usedforsecurity=False).digest())


def parse_file(
    source: FileSource, path: str, *, shared: ParseCache | None = SHARED_PARSES
) -> Parsed:
    """The documents of one file of `source`, through the shared cache; raises TreeError
    (and SourceError when the file cannot be read)."""
    key = content_key(source, path) if shared is not None else None
    hit = shared.get(key) if shared is not None and key is not None else None
    if hit is None:
        text = read_text(source, path)
        if shared is not None and key is None:
            key = content_key(source, path, text)
            hit = shared.get(key) if key is not None else None
        if hit is None:
            try:
                hit = parse_text(text, path)
            except TreeError as exc:
                hit = exc
            if shared is not None and key is not None:
                shared.put(key, hit)
    if isinstance(hit, TreeError):
        raise hit
    return hit


class DocCache:
    """Parses each file of a source at most once (and, through `shared`, each content at
    most once per process); hands out independent copies."""

    def __init__(self, source: FileSource, shared: ParseCache | None = SHARED_PARSES) -> None:
        self.source = source
        self.shared = shared
        self._parsed: dict[str, list[tuple[Any, int]] | TreeError] = {}
        self._text: dict[str, str] = {}

    def text(self, path: str) -> str:
        if path not in self._text:
            try:
                self._text[path] = read_text(self.source, path)
            except SourceError as exc:
                raise TreeError(path, 0, str(exc).split(": ", 1)[-1]) from None
        return self._text[path]

    def parsed(self, path: str) -> list[tuple[Any, int]]:
        """Raw documents (shared: do not mutate) of a file; raises TreeError."""
        hit = self._parsed.get(path)
        if hit is None:
            key = None
            if self.shared is not None:
                key = content_key(self.source, path)
                if key is None:
                    key = content_key(self.source, path, self.text(path))
                hit = self.shared.get(key) if key is not None else None
            if hit is None:
                try:
                    hit = parse_text(self.text(path), path)
                except TreeError as exc:
                    hit = exc
                if self.shared is not None and key is not None:
                    self.shared.put(key, hit)
            self._parsed[path] = hit
        if isinstance(hit, TreeError):
            raise hit
        return hit

    def docs(self, path: str) -> list[Doc]:
        """Fresh copies of a file's non-empty mapping documents."""
        out = []
        for data, line in self.parsed(path):
            if data is None:
                continue
            if not isinstance(data, dict):
                raise TreeError(path, line, "document is not a mapping (a Kubernetes object)")
            out.append(Doc(clone(data), path, line))
        return out


def find_line(text: str, needle: str, default: int = 1) -> int:
    """1-based line of the first occurrence of `needle` in `text` (or `default`)."""
    idx = text.find(needle)
    return text.count("\n", 0, idx) + 1 if idx >= 0 else default
