"""`FluxTwin.settle` says False when one reconcile pass outlasts its deadline, as its
docstring promises; it used to raise, and `dapper-tui lab --nodes 500` on a busy
machine died with a traceback ten minutes in."""

from __future__ import annotations

from types import SimpleNamespace

from dapper.lab.flux_twin import FluxTwin


def test_a_pass_longer_than_the_deadline_is_not_settled_and_raises_nothing():
    asked: list[float] = []

    def reconcile_now(timeout: float) -> None:
        asked.append(timeout)
        raise TimeoutError(f"no Flux twin reconcile finished within {timeout}s")

    twin = SimpleNamespace(world=SimpleNamespace(faults=[]), reconcile_now=reconcile_now)
    assert FluxTwin.settle(twin, timeout=0.5) is False  # type: ignore[arg-type]
    assert len(asked) == 1 and asked[0] >= 0.5 - 0.1
