"""Usage as bars and the session's trend as a sparkline (issue 16 point 14)."""

from __future__ import annotations

from dapper.backends.model import ClusterSnapshot, Node
from dapper.tui import format as fmt
from dapper.tui.screens.detail import node_trend
from dapper.tui.trends import NodeTrends


def test_a_bar_is_its_width_and_fills_in_eighths() -> None:
    assert fmt.bar(0.0, 6).plain == "░░░░░░"
    assert fmt.bar(0.5, 6).plain == "███░░░"
    assert fmt.bar(1.0, 6).plain == "██████"
    assert fmt.bar(0.26, 6).plain == "█▌░░░░"  # 12.48 eighths
    assert fmt.bar(None, 6).plain == "······"
    assert fmt.bar(0.95, 6).style == "bold red"  # the same thresholds as the figures


def test_the_trend_keeps_one_sample_per_snapshot_and_a_bounded_window() -> None:
    trends = NodeTrends(samples=3)
    for t, cpu in enumerate((0.1, 0.5, 0.9, 0.2), start=1):
        snap = ClusterSnapshot("LAB", "LAB", True, float(t), nodes=(Node("n", cpu_usage=cpu),))
        trends.add(snap)
        trends.add(snap)  # the same snapshot twice is one sample
    assert trends.cpu("n") == [0.5, 0.9, 0.2] and trends.mem("n") == []
    assert fmt.sparkline(trends.cpu("n"), 10).plain == "▅█▂"
    line = node_trend(trends, "n").plain
    assert "cpu" in line and "20%" in line and "▅█▂" in line and "mem" in line
