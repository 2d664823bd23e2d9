"""A bigger lab still joins and stays correct while pods churn: 100 nodes, ~1,500 pods
(Deployments, StatefulSets, DaemonSets), synthetic Flux apps, the 4 P100s on their nodes."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

from dapper.backends.clients.kube import KubeBackend
from dapper.backends.snapshot.collector import Collector
from dapper.lab.flux_scale import replicas_plan
from dapper.lab.runtime import default_scale_apps, start_lab

from tests.waiting import eventually

NODES, PODS, CHURN = 100, 1500, 50.0


def test_a_100_node_lab_with_churn_snapshots_every_node_and_the_four_gpus(
    tmp_path: Path,
) -> None:
    with start_lab(directory=tmp_path / "lab", nodes=NODES, pods=PODS, churn=CHURN) as lab:
        assert lab.flux is not None and lab.flux.scale_apps == default_scale_apps(NODES) == 279
        assert lab.flux.settle(timeout=300), lab.flux.unsettled()
        assert lab.flux.last_error == ""
        pods = lab.world.pods()
        synthetic = [p for p in pods if p["metadata"]["namespace"].startswith("bench-")]
        assert len(synthetic) == sum(replicas_plan(279, NODES, PODS))
        owners = collections.Counter(
            (p["metadata"].get("ownerReferences") or [{}])[0].get("kind") for p in synthetic
        )
        assert owners["StatefulSet"] and owners["ReplicaSet"]
        by_set = collections.defaultdict(list)
        for p in synthetic:
            ref = (p["metadata"].get("ownerReferences") or [{}])[0]
            if ref.get("kind") == "StatefulSet":
                by_set[ref["name"]].append(int(p["metadata"]["name"].rsplit("-", 1)[1]))
        for name, ordinals in by_set.items():
            assert sorted(ordinals) == list(range(len(ordinals))), name  # 0..n-1, once each

        # churn arrives through the API as a watch delivers it
        kube = KubeBackend.from_kubeconfig(lab.files.kubeconfig, read_only=True)
        try:
            _, rv = kube.list_raw("pods")
            resp = kube.watch_raw("pods", rv, 3)
            seen = collections.Counter()
            for line in resp.stream(amt=None, decode_content=False):
                for doc in line.splitlines():
                    if doc.strip():
                        seen[json.loads(doc)["type"]] += 1
            resp.release_conn()
        finally:
            kube.close()
        assert seen["MODIFIED"] and seen["ADDED"] and seen["DELETED"], seen

        async def snapshot():
            collector = Collector(lab.config, timeout=30)
            try:
                return await collector.refresh_all()
            finally:
                await collector.close()

        snap = asyncio.run(snapshot())
        eventually(lambda: lab.churn is not None and lab.churn.changes > 50, message="churn")
    assert [s.source for s in snap.sources if not s.ok] == []
    assert len(snap.nodes) == NODES and len({n.name for n in snap.nodes}) == NODES
    assert sum(len(n.pods) for n in snap.nodes) >= PODS * 0.9
    joined = [g for g in snap.gpus if g.node_name]
    assert len(joined) == 4 and {g.model for g in joined} == {joined[0].model}
    assert "P100" in joined[0].model
    names = {k.name for k in snap.kustomizations}
    assert "bench-app-0278" in names and "cluster-apps" in names
