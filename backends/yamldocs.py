"""YAML documents of the Flux tree, parsed once, with the file and line each came from.

ruamel's round-trip loader (YAML 1.2, as go-yaml v3 and sops read it) keeps line numbers
for error messages. Parsed documents are turned into plain dicts and lists; strings that
were plain (unquoted) scalars are marked `Plain`, so that after Flux's `${VAR}`
substitution a value like `replicas: ${N}` can be re-typed the way Flux re-parses it.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any

from dapper.backends.treesource import FileSource, SourceError, read_text
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


class DocCache:
    """Parses each file of a source at most once; hands out independent copies."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
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
            try:
                hit = parse_text(self.text(path), path)
            except TreeError as exc:
                hit = exc
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
