"""Typed runbook parameters: parsed from `k=v` text, validated, redacted for the journal.

A runbook declares its inputs once; the CLI (`--param k=v`), the console's form and the
journal all read the same declaration, so a secret parameter is masked everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "<redacted>"
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


class ParamError(ValueError):
    """A parameter is missing, unknown or malformed; the message is one line."""


@dataclass(frozen=True)
class Param:
    """One input: `type` is "str", "int", "bool" or "list" (comma-separated strings)."""

    name: str
    type: str = "str"
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    required: bool = False

    def parse(self, text: str) -> Any:
        text = text.strip()
        if self.type == "int":
            try:
                value: Any = int(text)
            except ValueError:
                raise ParamError(f"{self.name}: {text!r} is not an integer") from None
        elif self.type == "bool":
            if text.lower() not in _TRUE | _FALSE:
                raise ParamError(f"{self.name}: expected yes or no, got {text!r}")
            value = text.lower() in _TRUE
        elif self.type == "list":
            value = tuple(p.strip() for p in text.split(",") if p.strip())
        else:
            value = text
        items = value if isinstance(value, tuple) else (value,)
        if self.choices and any(str(v) not in self.choices for v in items):
            raise ParamError(f"{self.name}: must be one of {', '.join(self.choices)}")
        return value


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """`k=v` strings (CLI `--param`) into a dict; the value may contain `=`."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"--param {pair.split('=')[0]!r}: expected NAME=VALUE")
        out[key.strip()] = value
    return out


def resolve(declared: Iterable[Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """Values for every declared parameter: given (text or typed), else the default."""
    params = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in given and given[name] is not None:
            raw = given[name]
            out[name] = p.parse(raw) if isinstance(raw, str) else raw
        elif p.required:
            raise ParamError(f"missing parameter {name} ({p.help or p.type})")
        else:
            out[name] = p.default
    return out


def redact(declared: Iterable[Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values with every secret parameter replaced: what the journal and screens get."""
    secret = {p.name for p in declared if p.secret}
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k in secret and v not in (None, ""):
            out[k] = REDACTED
        else:
            out[k] = list(v) if isinstance(v, tuple) else v
    return out
