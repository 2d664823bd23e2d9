"""`dapper-tui lab` checks every fault and --nodes before starting: one line in the
operator's terms, exit 2, and no client file left that looks like a working lab."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.cli.main import FAULT_HELP, main
from dapper.lab.fault_targets import FORMS

REFUSED = [
    ("node-notready:talos-node-large-9", "no node 'talos-node-large-9' in the lab (known: "),
    ("api-down:foo", "no API 'foo' in the lab (known: kubernetes, proxmox, talos)"),
    ("node-notready", "fault node-notready needs a target: node-notready:<node>"),
    ("ks-failing:nope/nope", "no Flux Kustomization 'nope/nope' in the lab (known: "),
    ("vm-stopped:999", "no VM '999' in the lab (known: 100 talos-control-1, "),
    ("etcd-unhealthy:talos-node-large-1", "no control-plane node 'talos-node-large-1'"),
    ("pool-degraded:pool-x", "no DiskPool 'pool-x' in the lab (known: "),
    ("gpu-gone:0000:99:00.0", "no PCI device '0000:99:00.0' in the lab (known: "),
    ("api-slow:talos:soon", "api-slow seconds must be a positive number, not 'soon'"),
    ("vm-destroyed:talos-node-large-9", "no VM 'talos-node-large-9' in the lab (known: "),
    ("disk-failed:talos-node-large-9", "no node 'talos-node-large-9' in the lab (known: "),
    ("node-wedged:pve", "no node 'pve' in the lab (known: "),
    ("bogus:1", "unknown fault 'bogus:1'; known: node-notready, "),
]


@pytest.mark.parametrize(("fault", "reason"), REFUSED)
def test_a_wrong_fault_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str, reason: str
) -> None:
    target = tmp_path / "run"
    assert main(["lab", "--dir", str(target), "--fault", fault]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line]
    assert out == "" and len(lines) == 1 and lines[0].startswith(f"dapper-tui lab: {reason}"), err
    assert not target.exists() or list(target.iterdir()) == []


@pytest.mark.parametrize("nodes", ["0", "-3", "x", "5000"])
def test_a_wrong_node_count_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nodes: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["lab", "--dir", str(tmp_path / "run"), "--nodes", nodes])
    assert exit_.value.code == 2
    assert "argument --nodes:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_help_names_every_fault_form() -> None:
    for form in FORMS.values():
        kind = form.split(":")[0]
        assert f"  {kind}:" in FAULT_HELP, kind
