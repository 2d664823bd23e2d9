"""Unknown is not zero: a source that never answered makes its counts `?` in `status` and
in the console's header alike; a cordoned node is counted as kubectl shows it."""

from __future__ import annotations

from dapper.backends.model import ClusterSnapshot, Health, Node, SourceHealth, summarize
from dapper.cli.status_cmd import render_text
from dapper.tui.widgets.bars import fault_line_text, header_text


def snapshot(proxmox: SourceHealth, *nodes: Node) -> ClusterSnapshot:
    return ClusterSnapshot(
        cluster="LAB",
        mode="LAB",
        read_only=True,
        taken_at=100.0,
        nodes=nodes or (Node("w-1", ready="True"),),
        sources=(SourceHealth("kubernetes", Health.OK, last_success=100.0), proxmox),
    )


def test_a_source_that_never_answered_is_unknown_in_status_and_header() -> None:
    down = SourceHealth("proxmox", Health.DEGRADED, "connection refused")
    s = snapshot(down)
    first = render_text(s).splitlines()[0]
    assert "vms ? (proxmox unreachable)" in first and "gpu ? (proxmox unreachable)" in first
    assert "vms 0/0" not in first and "nodes 1/1 Ready" in first
    header = header_text(s, mode="LAB", read_only=True, now=101.0).plain
    assert "vms ? · gpu slots ?" in header and "⚠ down: proxmox" in header


def test_last_good_data_keeps_its_counts_and_shows_its_age() -> None:
    stale = SourceHealth("proxmox", Health.DEGRADED, "refused", last_success=40.0)
    s = snapshot(stale)
    assert summarize(s).vms.known
    header = header_text(s, mode="LAB", read_only=True, now=100.0).plain
    assert "vms 0/0" in header and "⚠ stale: proxmox 60s" in header


def test_until_every_source_answered_the_fault_line_says_loading() -> None:
    s = snapshot(SourceHealth("proxmox"))
    assert fault_line_text(s, 101.0).plain == " … loading proxmox"
    header = header_text(s, mode="LAB", read_only=True, now=101.0).plain
    assert "vms … · gpu slots …" in header


def test_a_cordoned_node_is_ready_schedulingdisabled_and_not_counted_good() -> None:
    s = snapshot(
        SourceHealth("proxmox", Health.OK, last_success=100.0),
        Node("w-1", ready="True", unschedulable=True),
        Node("w-2", ready="Unknown"),
        Node("w-3", ready="True"),
    )
    assert [n.status for n in s.nodes] == ["Ready,SchedulingDisabled", "NotReady", "Ready"]
    assert "nodes 1/3 Ready (1 SchedulingDisabled)" in render_text(s)
    assert "nodes 1/3" in header_text(s, mode="LAB", read_only=True, now=101.0).plain


def test_before_the_first_answer_no_count_reads_zero() -> None:
    first = ClusterSnapshot(cluster="LAB", mode="LAB", read_only=True, taken_at=0.0)
    header = header_text(first, mode="LAB", read_only=True, now=1.0).plain
    assert "0/0" not in header and "nodes … · vms … · gpu slots …" in header
    assert fault_line_text(first, 1.0).plain.startswith(" … loading")
