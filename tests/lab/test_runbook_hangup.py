"""SIGHUP (a dropped SSH session) during a runbook stops it at the next safe point: the run
is journaled as aborted, resumable, and its resume finishes with one commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dapper.actions.journal import list_runs
from dapper.cli.main import main
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"


def test_sighup_mid_run_stops_at_a_safe_point_and_resumes(tmp_path: Path) -> None:
    with start_lab(directory=tmp_path / "lab", timings=Timings(reconcile_interval=600.0)) as lab:
        lab.flux.reconcile_now(timeout=60)
        lab.flux.stop()  # the reconcile wait then lasts until SIGHUP comes
        command = [
            sys.executable, "-m", "dapper.cli.main", "--config", str(lab.files.config),
            "runbook", "run", "secret-rotate", "--param", f"file={CF_FILE}",
            "--param", "keys=api-token", "--param", "reconcile-timeout=120", "--yes",
        ]  # fmt: skip
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[reconcile] running"):
                break
        else:
            raise AssertionError("".join(seen) + (proc.stderr.read() if proc.stderr else ""))
        time.sleep(0.5)  # inside the wait for Flux
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGHUP, err
        assert "stopped on SIGHUP at a safe point" in err and "Traceback" not in err
        run = list_runs()[0]
        assert run.status == "unfinished"
        commits_before = _run_commits(lab, run.run_id)
        assert len(commits_before) == 1  # pushed before the wait, journaled

        lab.flux.start()
        code = main(["--config", str(lab.files.config), "runbook", "resume", run.run_id, "--yes"])
        assert code == 0
        assert list_runs()[0].status == "done"
        assert _run_commits(lab, run.run_id) == commits_before  # no second commit


def _run_commits(lab: object, run_id: str) -> list[str]:
    repo = lab.remote.repository()  # type: ignore[attr-defined]
    tip = repo.references["refs/heads/main"].target
    return [str(c.id) for c in repo.walk(tip) if f"Runbook-Run: {run_id}" in c.message]
