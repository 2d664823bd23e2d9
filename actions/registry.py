"""The runbooks by name: what `dapper-tui runbook run NAME` and the console can start."""

from __future__ import annotations

from collections.abc import Callable

from dapper.actions.engine import Runbook


def _secret_rotate() -> Runbook:
    from dapper.actions.rb_secret_rotate import SecretRotate

    return SecretRotate()


def _rekey() -> Runbook:
    from dapper.actions.rb_rekey import Rekey

    return Rekey()


RUNBOOKS: dict[str, Callable[[], Runbook]] = {
    "secret-rotate": _secret_rotate,
    "rekey": _rekey,
}


class UnknownRunbook(KeyError):
    def __str__(self) -> str:
        return f"no runbook {self.args[0]!r}; known: {', '.join(sorted(RUNBOOKS))}"


def get(name: str) -> Runbook:
    try:
        return RUNBOOKS[name]()
    except KeyError:
        raise UnknownRunbook(name) from None
