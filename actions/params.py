"""Typed runbook parameters: parsed from `k=v` text, validated, redacted for the journal.

A runbook declares its inputs once; the CLI (`--param k=v`, its prompts and `--help`), the
console's form and the journal all read the same declaration, so neither front end knows
any runbook by name and a secret parameter is masked everywhere. A parameter whose value
is picked from the world (a SOPS file, a node, a VM) names a `ChoicesProvider`: one class
per kind of pick, returning plain `Choice`s the front ends render as they see fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from dapper.backends.config import Config

REDACTED = "<redacted>"
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}

ParamType = Literal["str", "int", "bool", "list"]
Validator = Callable[[Any], str | None]  # the parsed value -> None, or a one-line reason


class ParamError(ValueError):
    """A parameter is missing, unknown or malformed; the message is one line."""


@dataclass(frozen=True)
class Choice:
    """One pickable value: `label` is what a list shows (default: the value); `detail`
    lines say more about it (a SOPS file's owner and key names, a node's role)."""

    value: str
    label: str = ""
    detail: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return self.label or self.value


@dataclass(frozen=True)
class ChoiceContext:
    """What a provider may read: the configuration and repository, the values chosen so
    far for other parameters (a dependent provider reads its parent's), and optionally
    the console's last snapshot or backends (None at the CLI)."""

    repo_path: Path
    config: Config | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    snapshot: Any = None
    backends: Any = None

    @classmethod
    def of(cls, config: Config, **kw: Any) -> ChoiceContext:
        return cls(Path(config.repo_path), config, **kw)


class ChoicesProvider:
    """Where a parameter's choices come from; one subclass per kind of pick.

    `heading` names what a list of these shows (a column title); `depends_on` names the
    parameters whose values `choices` reads from `ctx.values` (the front ends ask again
    when one of them changes, and not before each has a value). `choices` may read files
    and backends: front ends call it off their UI thread.
    """

    heading: str = ""
    depends_on: tuple[str, ...] = ()

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        raise NotImplementedError


@dataclass(frozen=True)
class Param:
    """One input, declared once for the CLI, the console and the journal.

    `type` is "str", "int", "bool" or "list" (comma-separated strings). `label` is the
    prompt (default: the name); `help` one line for `--help` and the form; `hint` how to
    pick in the console when that differs from `help`. `choices` is a fixed set; a
    `provider` computes them from the world instead (a "list" parameter then picks
    several). `secret` values are masked when typed and never journaled in plaintext.
    `validate` gets the parsed value and returns None or a one-line reason. `shown_when`
    (other parameter, value) hides an input that only matters for one value of another.
    """

    name: str
    type: ParamType = "str"
    help: str = ""
    default: Any = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    required: bool = False
    label: str = ""
    hint: str = ""
    provider: ChoicesProvider | None = None
    validate: Validator | None = None
    shown_when: tuple[str, str] | None = None

    @property
    def prompt(self) -> str:
        return self.label or self.name

    @property
    def multiple(self) -> bool:
        return self.type == "list"

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

    def check(self, value: Any) -> None:
        """Raise ParamError with the validator's one line when it rejects `value`."""
        if self.validate is None:
            return
        reason = self.validate(value)
        if reason:
            line = " ".join(str(reason).split())
            raise ParamError(f"{self.name}: {line}")

    def shown(self, values: Mapping[str, Any]) -> bool:
        """Whether this input matters given the other values (see `shown_when`)."""
        if self.shown_when is None:
            return True
        other, wanted = self.shown_when
        return str(values.get(other)) == wanted


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
            p.check(out[name])
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


@dataclass(frozen=True)
class ChoiceList:
    """A provider's answer: its choices, or why there are none (one line)."""

    choices: tuple[Choice, ...] = ()
    error: str = ""


def load_choices(param: Param, ctx: ChoiceContext) -> ChoiceList:
    """Ask a parameter's provider; a failure becomes a one-line reason, not an exception,
    so one broken picker never hides the other runbooks."""
    if param.provider is None:
        return ChoiceList(tuple(Choice(c) for c in param.choices))
    try:
        return ChoiceList(tuple(param.provider.choices(ctx)))
    except Exception as exc:
        text = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        lines = str(text).strip().splitlines()
        return ChoiceList(error=lines[0] if lines else type(exc).__name__)


def preload_choices(
    declared: Iterable[Param], ctx: ChoiceContext, cache: dict[int, ChoiceList] | None = None
) -> dict[str, ChoiceList]:
    """The choices of every parameter whose provider depends on no other, by name; one
    provider shared by several parameters (or runbooks, through `cache`) is asked once."""
    cache = {} if cache is None else cache
    out: dict[str, ChoiceList] = {}
    for p in declared:
        if p.provider is None or p.provider.depends_on:
            continue
        key = id(p.provider)
        if key not in cache:
            cache[key] = load_choices(p, ctx)
        out[p.name] = cache[key]
    return out


def dependencies_met(param: Param, values: Mapping[str, Any]) -> bool:
    """A dependent provider can be asked once every parameter it reads has a value."""
    deps = param.provider.depends_on if param.provider is not None else ()
    return all(values.get(d) not in (None, "", ()) for d in deps)
