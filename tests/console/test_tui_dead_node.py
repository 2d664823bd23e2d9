"""A dead node as the console shows it: the NoExecute taint with its age, and the pods
that wait in Terminating for a kubelet that will not come back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings
from dapper.tui.detail_builders import plain
from dapper.tui.screens.detail import DetailScreen

from tests.console.tui_lab import make_app, settle
from tests.waiting import eventually

NODE = "talos-node-large-3"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    timings = Timings(node_grace=0.3, reconcile_interval=600.0)
    running = start_lab(directory=tmp_path / "lab", timings=timings)
    try:
        assert running.flux is not None
        running.flux.reconcile_now(timeout=60)  # the apps' pods, some on the dying node
        yield running
    finally:
        running.stop()


def _evict_one(lab: Any) -> str:
    """Evict a controller-owned pod from the dead node: it stays Terminating there."""
    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    try:
        eventually(
            lambda: any(
                t.endswith(":NoExecute") for n in kube.nodes() if n.name == NODE for t in n.taints
            ),
            timeout=10,
            message="the unreachable NoExecute taint",
        )
        pod = next(p for p in kube.pods(node=NODE) if p.owner_kind not in ("DaemonSet", "Node"))
        kube.evict(pod.namespace, pod.name)
        eventually(
            lambda: any(p.terminating for p in kube.pods(node=NODE) if p.name == pod.name),
            timeout=10,
            message="the evicted pod Terminating",
        )
        return pod.name
    finally:
        kube.close()


async def test_a_dead_nodes_detail_shows_taint_age_and_terminating_pods(lab: Any) -> None:
    lab.world.inject(f"vm-destroyed:{NODE}")
    evicted = _evict_one(lab)
    app = make_app(lab)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        table = app.main.panes["nodes"].table
        table.move_cursor(row=table._order.index(NODE))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        body = plain(app.screen.content, 158)
    taints = next(line for line in body.splitlines() if line.strip().startswith("taints"))
    assert "node.kubernetes.io/unreachable:NoExecute (" in taints
    pods = [line.split() for line in body.splitlines() if line.startswith("  ") and "/" in line]
    states = {cells[1]: cells[0] for cells in pods if len(cells) > 2}
    evicted_row = next(name for name in states if evicted[:20] in name)  # names are cut
    assert states[evicted_row] == "Terminating"
    assert states and all(  # DaemonSet pods tolerate the taint: they are not evicted
        state == "Running" for name, state in states.items() if "/cilium-" in name
    )
