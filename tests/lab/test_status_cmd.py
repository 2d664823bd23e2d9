"""`dapper-tui status`: one snapshot, exit 0 healthy / 1 degraded / 2 unusable config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dapper.backends.errors import BackendError
from dapper.backends.model import Fault
from dapper.backends.snapshot.join import SnapshotParts
from dapper.backends.snapshot.registry import REGISTRY
from dapper.backends.snapshot.sources import SourceContext
from dapper.cli.main import main
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab():
    running = start_lab(repo=REPO, timings=Timings(boot=0.05, task=0.05, reconcile_interval=30))
    assert running.flux.settle(timeout=90), running.flux.unsettled()
    yield running
    running.stop()


def test_status_json_on_a_healthy_lab(lab, capsys) -> None:
    code = main(["--config", str(lab.files.config_readonly), "status", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["faults"]
    assert out["healthy"] is True and out["mode"] == "LAB"
    assert out["summary"]["nodes"] == {
        "good": 7,
        "total": 7,
        "faults": 0,
        "warnings": 0,
        "source": "kubernetes",
        "known": True,
    }
    assert len(out["gpus"]) == 4 and out["read_only"] is True
    assert {s["source"]: s["health"] for s in out["sources"]} == dict.fromkeys(
        ("kubernetes", "talos", "proxmox", "git", "mayastor"), "ok"
    )


def test_status_into_a_pipe_closed_early_ends_quietly(lab) -> None:
    # `dapper-tui status --json | head -c 100`: the reader leaves before the output ends
    read, write = os.pipe()
    config = str(lab.files.config_readonly)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dapper.cli.main", "--config", config, "status", "--json"],
        stdout=write,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    assert os.read(read, 100).startswith(b"{")
    os.close(read)
    _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
    assert proc.returncode == 141


def test_status_text_and_exit_1_when_degraded(lab, capsys) -> None:
    lab.world.inject("api-down:proxmox")
    try:
        code = main(["--config", str(lab.files.config_readonly), "status", "--timeout", "2"])
    finally:
        lab.world.clear("api-down:proxmox")
    out = capsys.readouterr().out
    assert code == 1
    assert (
        out.splitlines()[0].startswith("LAB LAB  READ-ONLY") or "READ-ONLY" in out.splitlines()[0]
    )
    assert "proxmox degraded (connection refused" in out
    assert "Traceback" not in out


def test_status_exit_2_on_unusable_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("kubeconfig = [unclosed\n")
    assert main(["--config", str(bad), "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dapper-tui status: ") and "not valid TOML" in err
    assert len(err.splitlines()) == 1
    assert main(["--config", str(tmp_path / "missing.toml"), "status"]) == 2
    capsys.readouterr()
    no_files = tmp_path / "nofiles.toml"
    no_files.write_text(
        f'kubeconfig = "{tmp_path}/none"\nrepo_path = "{tmp_path}"\n'
        '[proxmox]\nurl = "https://127.0.0.1:1"\ntoken_id = "a@pam!b"\n'
        'token_secret_env = "DAPPER_TEST_UNSET"\n'
    )
    assert main(["--config", str(no_files), "status"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert f"dapper-tui status: kubeconfig: {tmp_path}/none does not exist" in lines
    assert all(line.startswith("dapper-tui status: ") for line in lines)


def test_status_with_no_config_runs_on_a_fresh_lab(capsys) -> None:
    code = main(["status", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["faults"]
    assert out["cluster"] == "LAB" and len(out["nodes"]) == 7


class _Alerts:
    """A source registered only for this test: no edit to the collector or the CLI."""

    name = "alerts"
    interval = 30.0
    failure: str = ""

    def __init__(self, context: SourceContext) -> None:
        self.context = context

    async def fetch(self, *, fresh: bool = False) -> str:
        if self.failure:
            raise BackendError(self.failure)
        return "KubeletDown firing"

    def feed(self, parts: SnapshotParts, data: object) -> None:
        parts.faults.append(Fault("warning", "nodes", "alertmanager", str(data)))

    def refresh_after(self) -> tuple[str, ...]:
        return ()

    async def close(self) -> None:
        return None


def test_status_json_shows_a_registered_source(lab, capsys, monkeypatch) -> None:
    config = str(lab.files.config_readonly)
    with REGISTRY.registered("alerts", _Alerts):
        code = main(["--config", config, "status", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0, out["sources"]
        assert out["sources"][-1]["source"] == "alerts" and out["sources"][-1]["health"] == "ok"
        assert {"subject": "alertmanager", "message": "KubeletDown firing"}.items() <= next(
            f for f in out["faults"] if f["subject"] == "alertmanager"
        ).items()

        monkeypatch.setattr(_Alerts, "failure", "alertmanager: 503 Service Unavailable")
        code = main(["--config", config, "status", "--json"])
        out = json.loads(capsys.readouterr().out)
    assert code == 1
    alerts = out["sources"][-1]
    assert (alerts["source"], alerts["health"]) == ("alerts", "degraded")
    assert alerts["reason"] == "alertmanager: 503 Service Unavailable"
    assert [s["health"] for s in out["sources"][:-1]] == ["ok"] * 5  # the built-in sources
