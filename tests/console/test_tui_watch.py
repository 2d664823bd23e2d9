"""The console with Kubernetes watches: a change made elsewhere shows at once, no timer."""

from __future__ import annotations

import threading

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.kube_reader import KubeReader
from dapper.backends.snapshot.kubernetes_source import KubernetesSource

from tests.console.tui_lab import make_app, running_lab, settle

NODE = "talos-node-large-1"


def row_text(app, pane: str, key: str) -> str:
    return " ".join(getattr(c, "plain", str(c)) for c in app.main.panes[pane].table.get_row(key))


async def wait_for(pilot, cond, what: str, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_cordon_elsewhere_reaches_the_nodes_pane_through_the_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no timer fires during the test: only a watch notification can bring the change
    monkeypatch.setattr(KubernetesSource, "interval", 3600.0)
    with running_lab(flux=False) as lab:
        other = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context="lab-admin")
        app = make_app(lab)
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                await settle(pilot, app)
                await wait_for(pilot, lambda: app.collector.watching("kubernetes"), "watches")
                await wait_for(pilot, lambda: NODE in app.main.panes["nodes"].table._order, NODE)
                assert "SchedulingDisabled" not in row_text(app, "nodes", NODE)
                before = app.refreshes["kubernetes"]

                other.cordon(NODE)  # not through the console
                await wait_for(
                    pilot,
                    lambda: "Ready,SchedulingDisabled" in row_text(app, "nodes", NODE),
                    "the cordon, as kubectl shows it",
                )
                assert app.refreshes["kubernetes"] > before
                assert app.collector.interval("kubernetes") == 3600.0
        finally:
            other.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("kube-watch")]


async def test_the_console_lists_kubernetes_once_at_start_through_its_watches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first refresh ran before the watches started and listed every kind beside their
    # own first lists: at 20,000 pods, twice the work as the console starts.
    lists: list[tuple[str, str]] = []
    inner = KubeReader._json

    def recorded(self, what: str, *args, **kwargs):
        if what.startswith("list "):
            lists.append((threading.current_thread().name, what))
        return inner(self, what, *args, **kwargs)

    start_watch = KubernetesSource.start_watch

    def slow_start(self, *args, **kwargs) -> None:
        threading.Event().wait(0.5)  # its imports, on a busy machine
        start_watch(self, *args, **kwargs)

    monkeypatch.setattr(KubeReader, "_json", recorded)
    monkeypatch.setattr(KubernetesSource, "start_watch", slow_start)
    monkeypatch.setattr(KubernetesSource, "interval", 3600.0)
    with running_lab(flux=False) as lab:
        app = make_app(lab)
        async with app.run_test(size=(120, 30)) as pilot:
            await settle(pilot, app)
            await wait_for(pilot, lambda: NODE in app.main.panes["nodes"].table._order, NODE)
            assert app.collector.watching("kubernetes")
    kinds = ("nodes", "pods", "kustomizations", "diskpools", "events")
    listed = [(thread, what) for thread, what in lists if what.split()[1].split(".")[0] in kinds]
    assert all(thread.startswith("kube-watch") for thread, _ in listed), listed
    assert sorted(what.split()[1].split(".")[0] for _, what in listed) == sorted(kinds)
