"""A Talos sweep ends at its time budget once every machine it asks has answered before,
keeping the last answer of those still out; a first sweep, or one where nobody answered
yet, waits for them (up to the timeout)."""

from __future__ import annotations

import asyncio

import pytest
from dapper.backends.config import Config, load_config
from dapper.backends.model import SourceName, TalosMachine
from dapper.backends.snapshot import talos_source
from dapper.backends.snapshot.join import KubeData
from dapper.backends.snapshot.sources import SourceContext
from dapper.backends.snapshot.talos_source import TalosSource

NODES = ("10.0.0.1", "10.0.0.2")


class SlowTalos:
    """Answers each node after its delay, with `load1` saying which sweep asked."""

    def __init__(self) -> None:
        self.delay = {n: 0.0 for n in NODES}
        self.sweep = 0

    async def machines(self, nodes, *, timeout=None, on_answer=None):
        self.sweep += 1
        sweep = self.sweep

        async def one(node: str) -> TalosMachine:
            await asyncio.sleep(self.delay[node])
            machine = TalosMachine(node=node, stage="running", load1=float(sweep))
            on_answer(machine)
            return machine

        return tuple(await asyncio.gather(*(one(n) for n in nodes)))


@pytest.fixture
def source(monkeypatch):
    monkeypatch.setattr(talos_source, "SWEEP_SECONDS", 0.05)
    context = SourceContext(
        config=load_config(None, read_only=True),
        timeout=5.0,
        latest=lambda _name: None,
        talos_nodes=NODES,
    )
    src = TalosSource(context)
    src._client = SlowTalos()  # type: ignore[assignment]
    return src


def loads(data) -> dict[str, float]:
    return {m.node: m.load1 for m in data.machines}


async def test_a_first_sweep_waits_for_every_machine(source):
    source._client.delay[NODES[1]] = 0.3  # far past the budget
    assert loads(await source.fetch()) == {NODES[0]: 1.0, NODES[1]: 1.0}


async def test_a_later_sweep_ends_at_its_budget_keeping_the_last_answers(source):
    await source.fetch()
    source._client.delay[NODES[1]] = 0.3
    # the slow machine keeps sweep 1's answer; the quick one answers sweep 2
    assert loads(await source.fetch()) == {NODES[0]: 2.0, NODES[1]: 1.0}
    source._client.delay[NODES[1]] = 0.0  # it is asked first next time
    assert loads(await source.fetch()) == {NODES[0]: 3.0, NODES[1]: 3.0}


async def test_a_sweep_where_nobody_answered_in_budget_waits_for_an_answer(source):
    await source.fetch()
    source._client.delay = {NODES[0]: 0.2, NODES[1]: 0.3}
    answers = loads(await source.fetch())
    assert answers[NODES[0]] == 2.0  # not only old answers: the first to come is taken


def test_talos_waits_for_kubernetes_only_until_kubernetes_has_answered(tmp_path):
    """The node list to ask comes from Kubernetes: a first full refresh reads it first;
    later ones use the last list instead of paying for both sources in turn."""
    latest: dict[str, object] = {}
    config = Config(talosconfig=str(tmp_path / "no-talosconfig"))  # names no nodes
    src = TalosSource(SourceContext(config=config, timeout=5.0, latest=latest.get))
    assert src.refresh_after() == (SourceName.KUBERNETES,)
    latest[SourceName.KUBERNETES] = KubeData()
    assert src.refresh_after() == ()
