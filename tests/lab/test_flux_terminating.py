"""The Flux twin's next pass keeps a Deployment's replacement pod, not the Terminating one
it replaced on a dead node (a Terminating pod is no replica)."""

from __future__ import annotations

from pathlib import Path

from dapper.backends.clients.kube import KubeBackend
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

from tests.waiting import eventually

NODE = "talos-node-large-3"


def test_a_flux_pass_keeps_the_replacement_of_a_terminating_pod(tmp_path: Path) -> None:
    timings = Timings(node_grace=0.3, reconcile_interval=600.0)
    lab = start_lab(directory=tmp_path / "lab", timings=timings)
    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        assert lab.flux is not None
        lab.flux.reconcile_now(timeout=60)
        victim = next(p for p in kube.pods(node=NODE) if p.owner_kind == "ReplicaSet")
        lab.world.inject(f"vm-destroyed:{NODE}")
        eventually(lambda: not lab.world.node_ready(NODE), timeout=10, message="NotReady")
        kube.evict(victim.namespace, victim.name)

        def siblings() -> list:
            return [p for p in kube.pods() if p.owner_name == victim.owner_name]

        eventually(
            lambda: (
                any(p.terminating for p in siblings())
                and any(not p.terminating for p in siblings())
            ),
            timeout=10,
            message="the replacement next to the Terminating pod",
        )
        replacement = {p.name for p in siblings() if not p.terminating}
        lab.flux.reconcile_now(timeout=60)  # a full pass over every HelmRelease
        after = siblings()
        assert {p.name for p in after if not p.terminating} == replacement
        assert any(p.name == victim.name and p.terminating for p in after)
    finally:
        kube.close()
        lab.stop()
