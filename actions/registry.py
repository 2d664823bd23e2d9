"""The runbooks by name: what `dapper-tui runbook run NAME` and the console can start.

Front ends list `all_runbooks()` and render each from its own declaration (title,
summary, params); adding a runbook is one entry here. Tests may `register` a runbook
for their duration and `unregister` it after.
"""

from __future__ import annotations

from collections.abc import Callable

from dapper.actions.engine import Runbook


def _secret_rotate() -> Runbook:
    from dapper.actions.rb_secret_rotate import SecretRotate

    return SecretRotate()


def _rekey() -> Runbook:
    from dapper.actions.rb_rekey import Rekey

    return Rekey()


def _node_replace() -> Runbook:
    from dapper.actions.node_replace.runbook import NodeReplace

    return NodeReplace()


def _bootstrap() -> Runbook:
    from dapper.actions.bootstrap.runbook import Bootstrap

    return Bootstrap()


RUNBOOKS: dict[str, Callable[[], Runbook]] = {
    "secret-rotate": _secret_rotate,
    "rekey": _rekey,
    "node-replace": _node_replace,
    "bootstrap": _bootstrap,
}


class UnknownRunbook(KeyError):
    def __str__(self) -> str:
        return f"no runbook {self.args[0]!r}; known: {', '.join(sorted(RUNBOOKS))}"


def get(name: str) -> Runbook:
    try:
        return RUNBOOKS[name]()
    except KeyError:
        raise UnknownRunbook(name) from None


def all_runbooks() -> list[Runbook]:
    """Every registered runbook, in registration order."""
    return [factory() for factory in RUNBOOKS.values()]


def register(name: str, factory: Callable[[], Runbook]) -> None:
    """Add a runbook under `name` (replacing one of that name)."""
    RUNBOOKS[name] = factory


def unregister(name: str) -> None:
    RUNBOOKS.pop(name, None)
