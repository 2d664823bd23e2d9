"""YAML in and out for the generator: plain data with line numbers in, Talos-style YAML out.

Input is read as YAML 1.2 (as go-yaml v3 in talhelper and Talos reads it: a MAC address
stays a string, `"1048576"` stays a string). Output is block YAML with two-space indents
(what `talhelper genconfig` writes), never folded: certificates are one long line.
"""

from __future__ import annotations

import io
from typing import Any

from dapper.backends.gitops.yamldocs import strip_markers
from dapper.backends.gitops.yamldocs import to_plain as round_trip_to_plain
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import LiteralScalarString


class YamlLoadError(ValueError):
    """Text that is not YAML; `line` is 1-based (0 when unknown)."""

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def load_documents(text: str) -> list[Any]:
    """The documents of `text` as ruamel round-trip nodes (they carry `.lc` line info)."""
    try:
        return [d for d in YAML(typ="rt").load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlLoadError(str(exc.problem or exc.context or "invalid YAML"), line) from None
    except YAMLError as exc:
        raise YamlLoadError(str(exc).splitlines()[0] if str(exc) else "invalid YAML", 0) from None


def line_of(node: Any, key: Any = None) -> int:
    """1-based line of a round-trip mapping/sequence (or of its `key`), 0 when unknown."""
    try:
        if key is None:
            return int(node.lc.line) + 1
        if isinstance(node, CommentedMap):
            return int(node.lc.key(key)[0]) + 1
        if isinstance(node, CommentedSeq):
            return int(node.lc.item(key)[0]) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        pass
    return 0


def to_plain(node: Any) -> Any:
    """Round-trip nodes as dicts, lists and plain scalars (the tree's own conversion,
    without its quoting markers)."""
    return strip_markers(round_trip_to_plain(node))


def _for_output(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _for_output(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_for_output(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return LiteralScalarString(node)
    return node


def dump_documents(documents: list[Any]) -> bytes:
    """Documents as one YAML stream, `---` between them."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 1 << 30
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump_all([_for_output(d) for d in documents], out)
    return out.getvalue().encode("utf-8")
