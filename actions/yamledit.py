"""Round-trip YAML edits for plain (non-SOPS) files: comments, key order and layout survive.

The indentation style is found by trying the usual ones until loading and dumping the
original text gives it back unchanged, so an edit touches only the lines it changes.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Callable, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

_STYLES = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (2, 4, 0), (4, 4, 0))


class YamlEditError(ValueError):
    """The file cannot be edited as asked; one line."""


def _yaml(style: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=style[0], sequence=style[1], offset=style[2])
    return y


def _dump(y: YAML, docs: Sequence[Any], explicit_start: bool) -> str:
    buf = io.StringIO()
    y.explicit_start = explicit_start
    y.dump_all(list(docs), buf)
    return buf.getvalue()


class YamlFile:
    """A loaded YAML text whose documents can be changed and dumped in the same style.

    ruamel normalises a few layouts it cannot reproduce (e.g. a comment right after a
    sequence dash); `dump` therefore applies only the lines the change touched to the
    original text, and falls back to ruamel's full output when it cannot place them.
    """

    def __init__(self, text: str, source: str = "<text>") -> None:
        self.original = text
        self.source = source
        self.explicit_start = text.lstrip().startswith("---")
        self._yaml = _yaml(_STYLES[0])
        for style in _STYLES:
            y = _yaml(style)
            try:
                docs = list(y.load_all(text))
            except Exception as exc:  # ruamel raises many error types
                raise YamlEditError(f"{source}: not valid YAML ({type(exc).__name__})") from None
            if _dump(y, docs, self.explicit_start) == text:
                self._yaml = y
                break
        self._normal = _dump(self._yaml, list(self._yaml.load_all(text)), self.explicit_start)
        self.docs: list[Any] = list(self._yaml.load_all(text))

    def dump(self) -> str:
        changed = _dump(self._yaml, self.docs, self.explicit_start)
        if self._normal == self.original:
            return changed
        patched = _transplant(self.original, self._normal, changed)
        return changed if patched is None else patched


def _transplant(original: str, normal: str, changed: str) -> str | None:
    """Apply the normal->changed line edits to `original`; None when a hunk cannot be placed."""
    a, b, c = (t.splitlines(keepends=True) for t in (original, normal, changed))
    where: dict[int, int] = {}  # normal line -> original line, for identical lines
    for tag, i1, i2, j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                where[j1 + k] = i1 + k
    out = list(a)
    edits: list[tuple[int, int, list[str]]] = []
    ops = difflib.SequenceMatcher(None, b, c, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        if i1 == i2:  # pure insertion
            if i1 - 1 in where:
                at = where[i1 - 1] + 1
            elif i1 in where:
                at = where[i1]
            else:
                return None
            edits.append((at, at, c[j1:j2]))
            continue
        mapped = [where[i] for i in range(i1, i2) if i in where]
        if len(mapped) != i2 - i1 or mapped != list(range(mapped[0], mapped[0] + len(mapped))):
            return None
        edits.append((mapped[0], mapped[-1] + 1, c[j1:j2]))
    for start, end, lines in sorted(edits, reverse=True):
        out[start:end] = lines
    return "".join(out)


def edit_text(text: str, change: Callable[[list[Any]], object], source: str = "<text>") -> str:
    """Apply `change` to the documents of `text` and return the new text."""
    f = YamlFile(text, source)
    change(f.docs)
    return f.dump()


# -- .sops.yaml recipients --------------------------------------------------------------


def _replace_in_list(seq: CommentedSeq, old: set[str], new: str, keep_old: bool) -> bool:
    values = [str(v).strip() for v in seq]
    if not old & set(values):
        return False
    if keep_old:
        if new in values:
            return False
        seq.append(new)
        return True
    keep = values.index(new) if new in values else next(i for i, v in enumerate(values) if v in old)
    seq[keep] = new
    for i in reversed(range(len(seq))):
        if i != keep and values[i] in old:
            del seq[i]
    return True


def _replace_in_string(value: str, old: set[str], new: str, keep_old: bool) -> str:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not old & set(items):
        return value
    out = [v for v in items if keep_old or v not in old]
    if new not in out:
        out.append(new)
    return ",".join(out)


def set_age_recipients(docs: list[Any], old: Sequence[str], new: str, keep_old: bool) -> int:
    """Swap the `old` age recipients for `new` in every creation rule that has one of them
    (or add `new` next to them with `keep_old`); returns how many rules changed."""
    oldset = {o.strip() for o in old}
    changed = 0
    for doc in docs:
        rules = doc.get("creation_rules") if isinstance(doc, CommentedMap) else None
        for rule in rules or []:
            holders = [rule] + [g for g in rule.get("key_groups") or [] if isinstance(g, dict)]
            for holder in holders:
                age = holder.get("age")
                if isinstance(age, CommentedSeq):
                    changed += _replace_in_list(age, oldset, new, keep_old)
                elif isinstance(age, str):
                    updated = _replace_in_string(age, oldset, new, keep_old)
                    if updated != age:
                        holder["age"] = updated
                        changed += 1
    return changed


def set_node_mac(docs: list[Any], hostname: str, mac: str) -> int:
    """talconfig.yaml: the node's first interface selected by MAC gets `mac`; returns how
    many selectors changed (0 when it already had it)."""
    for doc in docs:
        for node in (doc.get("nodes") if isinstance(doc, CommentedMap) else None) or []:
            if not isinstance(node, CommentedMap) or node.get("hostname") != hostname:
                continue
            for iface in node.get("networkInterfaces") or []:
                selector = iface.get("deviceSelector") if isinstance(iface, CommentedMap) else None
                if isinstance(selector, CommentedMap) and "hardwareAddr" in selector:
                    if str(selector["hardwareAddr"]).lower() == mac.lower():
                        return 0
                    selector["hardwareAddr"] = mac.lower()
                    return 1
            raise YamlEditError(f"{hostname} has no interface selected by hardwareAddr")
    raise YamlEditError(f"no node {hostname} in talconfig.yaml")


def set_talconfig_mac(path: Any, hostname: str, mac: str) -> bool:
    """Rewrite talconfig.yaml in place with the node's new MAC; True if it changed."""
    from pathlib import Path

    file = Path(path)
    text = file.read_text()
    changed: list[int] = []
    new = edit_text(text, lambda docs: changed.append(set_node_mac(docs, hostname, mac)), str(file))
    if new != text:
        file.write_text(new)
    return bool(changed and changed[0])
