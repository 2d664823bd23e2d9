"""Runbook parameters at a plain terminal, from their declarations alone.

`describe` prints a runbook's title, summary and parameters with their choices (`runbook
run NAME --help`); `complete` fills in what `--param` left out: at a terminal it asks
(secret values with getpass, never echoed; choices by number or value), elsewhere it
prints what is missing and the choices to pick from. No runbook is known here by name.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from dapper.actions.engine import Runbook
    from dapper.actions.params import Choice, ChoiceContext, Param


class MissingParams(Exception):
    """Required parameters were not given and there is no terminal to ask on."""


def _choices(p: Param, context: ChoiceContext | None, values: Mapping[str, Any]) -> list[Choice]:
    """The choices of `p` now (a failing provider raises ParamError with its reason)."""
    from dapper.actions.params import Choice, ParamError, dependencies_met, load_choices

    if p.provider is None:
        return [Choice(c) for c in p.choices]
    if context is None or not dependencies_met(p, values):
        return []
    loaded = load_choices(p, replace(context, values=dict(values)))
    if loaded.error:
        raise ParamError(f"{p.name}: cannot list the choices: {loaded.error}")
    return list(loaded.choices)


def _choice_lines(choices: list[Choice], numbered: bool = False) -> list[str]:
    width = max((len(c.shown) for c in choices), default=0)
    lines = []
    for n, c in enumerate(choices, start=1):
        head = f"{n:>3}. " if numbered else ""
        detail = "  ".join(c.detail)
        lines.append(f"{head}{c.shown:<{width}}  {detail}".rstrip())
    return lines


def _traits(p: Param) -> str:
    traits = []
    if p.required:
        traits.append("required")
    elif p.default not in (None, ""):
        traits.append(f"default: {p.default}")
    if p.multiple:
        traits.append("comma-separated")
    if p.secret:
        traits.append("secret: asked at a prompt when not given, never journaled")
    if p.shown_when is not None:
        traits.append(f"only when {p.shown_when[0]}={p.shown_when[1]}")
    return f" ({'; '.join(traits)})" if traits else ""


def describe(runbook: Runbook, out: TextIO, context: ChoiceContext | None) -> None:
    """`runbook run NAME --help`: what it does, its parameters and their choices."""
    from dapper.actions.params import ParamError

    out.write(f"{runbook.name}: {runbook.title}\n")
    if runbook.summary:
        out.write(f"  {runbook.summary}\n")
    out.write(
        f"\nusage: dapper-tui runbook run {runbook.name} [--param NAME=VALUE ...]"
        " [--yes] [--dry-run]\n"
    )
    if not runbook.params:
        return
    out.write("\nparameters:\n")
    for p in runbook.params:
        out.write(f"  {p.name}{_traits(p)}\n")
        if p.help:
            out.write(f"      {p.help}\n")
        if p.choices:
            out.write(f"      one of: {', '.join(p.choices)}\n")
        if p.provider is None:
            continue
        if p.provider.depends_on:
            out.write(f"      choices follow from: {', '.join(p.provider.depends_on)}\n")
            continue
        if context is None:
            out.write("      choices: listed once a configuration names the repository\n")
            continue
        try:
            choices = _choices(p, context, {})
        except ParamError as exc:
            out.write(f"      {exc}\n")
            continue
        out.write("      choices:\n" if choices else "      choices: none found\n")
        for line in _choice_lines(choices):
            out.write(f"        {line}\n")


def _ask(p: Param, choices: list[Choice], out: TextIO) -> str:
    """One answer from the terminal: a secret by getpass, a choice by number or value."""
    if p.secret:
        return getpass.getpass(f"{p.prompt}: ")
    if choices:
        out.write(f"{p.prompt}: {p.help}\n" if p.help else f"{p.prompt}:\n")
        for line in _choice_lines(choices, numbered=True):
            out.write(f"  {line}\n")
        several = ", several separated by commas" if p.multiple else ""
        out.write(f"{p.prompt} [number or value{several}]: ")
    else:
        out.write(f"{p.prompt}{f' ({p.help})' if p.help else ''}: ")
    out.flush()
    answer = sys.stdin.readline()
    if not answer:
        raise EOFError("no answer")
    picked = []
    for part in answer.strip().split(",") if p.multiple else [answer.strip()]:
        part = part.strip()
        if part.isdigit() and choices and 1 <= int(part) <= len(choices):
            part = choices[int(part) - 1].value
        picked.append(part)
    return ",".join(picked)


def complete(
    runbook: Runbook, given: dict[str, str], out: TextIO, context: ChoiceContext | None
) -> dict[str, str]:
    """`given` plus an answer for every required (or secret) parameter it lacks; raises
    MissingParams with what to pass when there is no terminal to ask on."""
    from dapper.actions.params import ParamError

    interactive = sys.stdin.isatty()
    values: dict[str, Any] = {}
    missing: list[Param] = []
    for p in runbook.params:
        if p.name in given:
            values[p.name] = p.parse(given[p.name])
            continue
        if not p.shown(values) or not (p.required or (p.secret and interactive)):
            values[p.name] = p.default
            continue
        if not interactive:
            missing.append(p)
            continue
        text = _ask(p, [] if p.secret else _choices(p, context, values), out)
        if not text and not p.required:
            values[p.name] = p.default
            continue
        values[p.name] = p.parse(text)
        p.check(values[p.name])
        given[p.name] = text
    if missing:
        lines = [f"{runbook.name} needs " + " ".join(f"--param {p.name}=…" for p in missing)]
        for p in missing:
            try:
                choices = [] if p.secret else _choices(p, context, values)
            except ParamError as exc:
                lines.append(f"  {exc}")
                continue
            if choices:
                lines.append(f"choices for {p.name}:")
                lines += [f"  {line}" for line in _choice_lines(choices)]
        raise MissingParams("\n".join(lines))
    return given
