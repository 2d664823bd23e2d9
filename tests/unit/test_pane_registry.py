"""The pane registry's derived views (keys, jump names, grid, header counts), pure code."""

from __future__ import annotations

from dataclasses import replace

import pytest
from dapper.backends.model import ClusterSnapshot, Count, Health, Node, SourceHealth
from dapper.tui.builtin_panes import NODES
from dapper.tui.pane_registry import PaneRegistry, pane_registry
from dapper.tui.pane_spec import GridSlot, HeaderCount
from dapper.tui.widgets.bars import header_text, health_counts


def test_the_builtin_panes_in_bar_order_with_their_keys_and_jump_names() -> None:
    registry = pane_registry()
    assert [p.id for p in registry.ordered()] == ["nodes", "vms", "gpus", "pools", "flux", "events"]
    assert registry.key_range() == "1-6"
    assert registry.jump_names() == ("nodes", "vms", "gpus", "pools", "ks", "events")
    assert registry.find(":KS") is registry.get("flux") and registry.find("5").id == "flux"
    assert registry.find("nosuchview") is None


def test_the_wide_grid_comes_from_the_slots() -> None:
    registry = pane_registry()
    order = [p.id for p in registry.grid_order()]
    assert order == ["nodes", "flux", "vms", "gpus", "events", "pools"]
    assert registry.grid_size() == (3, 3) and registry.grid_columns() == "1fr 1fr 1.2fr"


def test_a_registered_pane_changes_every_derived_view_until_unregistered() -> None:
    registry = PaneRegistry()
    registry.register(NODES)
    extra = replace(
        NODES,
        id="extra",
        key="9",
        order=9,
        aliases=("extra",),
        grid=GridSlot(row=1, column=3),
        header=HeaderCount("extra", lambda _sm, s: Count(len(s.nodes), len(s.nodes))),
    )
    with registry.registered(extra):
        assert registry.key_range() == "1-9" and registry.jump_names() == ("nodes", "extra")
        assert registry.grid_size() == (4, 2)
        assert registry.grid_columns() == "1fr 1fr 1.2fr 1fr"
        with pytest.raises(ValueError, match="extra"):
            registry.register(replace(extra, key="8"))
    assert registry.find("extra") is None and registry.key_range() == "1"


def test_header_counts_follow_the_panes_that_declare_one() -> None:
    snapshot = ClusterSnapshot(
        "LAB",
        "LAB",
        False,
        taken_at=100.0,
        nodes=(Node("a", ready="True"), Node("b", ready="False")),
        sources=(SourceHealth("proxmox", Health.DEGRADED, "401 Unauthorized"),),
    )
    labels = [(i.label, i.good, i.total, i.source) for i in health_counts(snapshot)]
    assert labels == [
        ("nodes", 1, 2, "kubernetes"),
        ("vms", 0, 0, "proxmox"),
        ("gpu slots", 0, 0, "proxmox"),
        ("pools", 0, 0, "kubernetes"),
        ("ks", 0, 0, "kubernetes"),
    ]
    text = header_text(snapshot, mode="LAB", read_only=False, now=101.0).plain
    assert "nodes 1/2 · vms ? · gpu slots ? · pools 0/0 · ks 0/0" in text  # ? : proxmox is failing


def test_a_registered_pane_can_count_in_the_header_from_the_snapshot() -> None:
    snapshot = ClusterSnapshot("LAB", "LAB", False, taken_at=100.0, nodes=(Node("a"),))
    unready = replace(
        NODES,
        id="unready",
        key="8",
        order=8,
        aliases=("unready",),
        header=HeaderCount("unready", lambda _sm, s: Count(0, len(s.nodes), len(s.nodes))),
    )
    with pane_registry().registered(unready):
        assert [i.label for i in health_counts(snapshot)][-1] == "unready"
        text = header_text(snapshot, mode="LAB", read_only=False, now=101.0).plain
        assert text.endswith("ks 0/0 · unready 0/1 ✗1")
    assert "unready" not in header_text(snapshot, mode="LAB", read_only=False, now=101.0).plain
