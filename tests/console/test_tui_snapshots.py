"""Pictures of the console (snap_compare) at 80x24 and 160x48, from the real lab.

The lab runs with one failing Kustomization so the fault line and counts show something,
and without the seeded Event history (its rows would date the pictures). Its Flux twin is
stopped once settled, so no retry is caught half way.
Ages are frozen to the snapshot's own time and lab ports are masked (tests/console/tui_lab.py).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from dapper.lab.world import Timings
from dapper.tui.trends import NodeTrends

from tests.console.tui_lab import make_app, running_lab, settle

NARROW, WIDE = (80, 24), (160, 48)


@pytest.fixture(scope="module")
def lab():
    quiet = Timings(event_history=False, flux_events=False)
    with running_lab(faults=("ks-failing:observability/loki",), timings=quiet) as lab:
        # Flux settled with loki failing: held there. The twin retries a failed
        # Kustomization at its retryInterval (2 s on its clock), and a picture taken
        # during a retry would show loki Progressing instead.
        lab.flux.stop()
        yield lab


TREND_SAMPLES = 3


def steady_trends(app) -> None:
    """The node detail's sparkline as if TREND_SAMPLES snapshots had come: how many did
    depends on how the collector's refreshes interleave, which a picture must not."""
    app.trends = NodeTrends()
    for i in range(TREND_SAMPLES):
        app.trends.add(replace(app.snapshot, taken_at=app.snapshot.taken_at + i))


def keys(*pressed):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        steady_trends(pilot.app)
        for key in pressed:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize(
    "pane",
    ["1", "2", "3", "4", "5"],
    ids=["nodes", "vms", "gpus", "pools", "flux"],
)
def test_narrow_each_pane(snap_compare, lab, pane):
    assert snap_compare(make_app(lab, still=True), terminal_size=NARROW, run_before=keys(pane))


def test_narrow_node_detail(snap_compare, lab):
    assert snap_compare(make_app(lab, still=True), terminal_size=NARROW, run_before=keys("enter"))


def test_narrow_help(snap_compare, lab):
    assert snap_compare(make_app(lab, still=True), terminal_size=NARROW, run_before=keys("?"))


def test_narrow_failing_flux_detail(snap_compare, lab):
    app = make_app(lab, still=True)
    run = keys("5", "exclamation_mark", "enter")
    assert snap_compare(app, terminal_size=NARROW, run_before=run)


def test_narrow_read_only(snap_compare, lab):
    app = make_app(lab, read_only=True, still=True)
    assert snap_compare(app, terminal_size=NARROW, run_before=keys("5"))


def test_narrow_degraded_pane(snap_compare, lab):
    lab.world.inject("api-down:proxmox")
    try:
        app = make_app(lab, still=True)
        assert snap_compare(app, terminal_size=NARROW, run_before=keys("2"))
    finally:
        lab.world.clear("api-down:proxmox")


def test_wide_main(snap_compare, lab):
    assert snap_compare(make_app(lab, still=True), terminal_size=WIDE, run_before=keys())


def test_wide_flux_detail(snap_compare, lab):
    app = make_app(lab, still=True)
    assert snap_compare(app, terminal_size=WIDE, run_before=keys("5", "enter"))


def test_wide_read_only(snap_compare, lab):
    app = make_app(lab, read_only=True, still=True)
    assert snap_compare(app, terminal_size=WIDE, run_before=keys())


def test_wide_degraded(snap_compare, lab):
    lab.world.inject("api-down:proxmox")
    try:
        assert snap_compare(make_app(lab, still=True), terminal_size=WIDE, run_before=keys())
    finally:
        lab.world.clear("api-down:proxmox")
