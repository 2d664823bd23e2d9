"""A bigger lab still joins: 30 nodes, synthetic Flux apps, the 4 P100s on their nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import default_scale_apps, start_lab


def test_a_30_node_lab_snapshot_has_every_node_and_the_four_gpus(tmp_path: Path) -> None:
    with start_lab(directory=tmp_path / "lab", nodes=30) as lab:
        assert lab.flux is not None and lab.flux.scale_apps == default_scale_apps(30) == 69
        lab.flux.reconcile_now(timeout=120)
        assert lab.flux.last_error == ""

        async def snapshot():
            collector = Collector(lab.config, timeout=30)
            try:
                return await collector.refresh_all()
            finally:
                await collector.close()

        snap = asyncio.run(snapshot())
    assert [s.source for s in snap.sources if not s.ok] == []
    assert len(snap.nodes) == 30 and len({n.name for n in snap.nodes}) == 30
    joined = [g for g in snap.gpus if g.node_name]
    assert len(joined) == 4 and {g.model for g in joined} == {joined[0].model}
    assert "P100" in joined[0].model
    names = {k.name for k in snap.kustomizations}
    assert "bench-app-0068" in names and "cluster-apps" in names
