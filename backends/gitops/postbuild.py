"""Flux postBuild variable substitution (`${VAR}`, `${VAR:=default}`, `${VAR:-default}`).

Flux substitutes after kustomize has built a path: every string of every object not
annotated `kustomize.toolkit.fluxcd.io/substitute: disabled`. Only the braced form is
substituted; `$${VAR}` escapes to a literal `${VAR}`. An undefined variable becomes the
empty string (Flux's default, non-strict mode) - which is why `check` reports them.

Values that must stay unknown (cluster-secrets, which the parser never decrypts) are
passed as `keep`: their `${VAR}` text is left in place instead of being emptied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

NAME_RE = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
DISABLE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"


@dataclass
class SubstResult:
    text: str
    undefined: set[str] = field(default_factory=set)  # referenced, no value, no default


def _find_close(text: str, start: int) -> int:
    """Index of the `}` closing a `${` whose body starts at `start` (nesting aware), or -1."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def substitute(
    text: str,
    values: Mapping[str, str],
    keep: Callable[[str], bool] = lambda _name: False,
) -> SubstResult:
    """Substitute `${...}` in one string."""
    if "$" not in text:
        return SubstResult(text)
    out: list[str] = []
    undefined: set[str] = set()
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            out.append(text[i])
            i += 1
            continue
        close = _find_close(text, i + 2)
        if close < 0:
            out.append(text[i:])
            break
        body = text[i + 2 : close]
        m = NAME_RE.match(body)
        if not m:
            out.append(text[i : close + 1])  # not a variable Flux knows: left as is
            i = close + 1
            continue
        name, rest = m.group(0), body[m.end() :]
        value = values.get(name)
        if rest == "":
            if value is not None:
                out.append(value)
            elif keep(name):
                out.append(text[i : close + 1])
            else:
                undefined.add(name)
        elif rest[:2] in (":=", ":-") or rest[:1] in ("=", "-"):
            default = rest[2:] if rest[0] == ":" else rest[1:]
            empty_counts = rest[0] == ":"
            if value is not None and (value != "" or not empty_counts):
                out.append(value)
            elif value is None and keep(name):
                out.append(text[i : close + 1])
            else:
                inner = substitute(default, values, keep)
                undefined |= inner.undefined
                out.append(inner.text)
        else:
            out.append(text[i : close + 1])  # ${VAR^^} and friends: not used here
        i = close + 1
    return SubstResult("".join(out), undefined)


def variables_in(text: str) -> list[tuple[str, bool]]:
    """(name, has_default) of every `${...}` in a string, nested defaults included."""
    found: list[tuple[str, bool]] = []
    i = 0
    while True:
        i = text.find("${", i)
        if i < 0:
            return found
        if i > 0 and text[i - 1] == "$":
            i += 2
            continue
        close = _find_close(text, i + 2)
        if close < 0:
            return found
        body = text[i + 2 : close]
        m = NAME_RE.match(body)
        if m:
            rest = body[m.end() :]
            has_default = rest[:1] in (":", "=", "-") and rest[:2] not in (":?",)
            found.append((m.group(0), has_default))
            if has_default:
                found.extend(variables_in(rest))
        i = close + 1


def is_disabled(obj: Mapping[str, object]) -> bool:
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return False
    ann = meta.get("annotations")
    return isinstance(ann, Mapping) and str(ann.get(DISABLE_ANNOTATION, "")) == "disabled"
