"""from-command output that is not UTF-8 is one clear line and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.actions.journal import list_runs
from dapper.cli.main import main
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"


def test_non_utf8_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with start_lab(directory=tmp_path / "lab", timings=Timings(reconcile_interval=600.0)) as lab:
        remote = lab.remote.repository()
        before = remote.references["refs/heads/main"].target
        args = ["--config", str(lab.files.config), "runbook", "run", "secret-rotate"]
        params = [f"file={CF_FILE}", "keys=api-token", r"from-command=printf '\377\376'"]
        code = main([*args, *(x for p in params for x in ("--param", p)), "--yes"])
        out, err = capsys.readouterr()
        assert code == 1 and "Traceback" not in out + err
        last = err.strip().splitlines()[-1]
        assert "from-command printed bytes that are not UTF-8 for api-token (at byte 0)" in last
        assert "nothing changed" in last
        assert remote.references["refs/heads/main"].target == before
        assert list_runs()[0].status == "failed"
        assert r"printf '\377\376'" not in list_runs()[0].path.read_text()  # type: ignore[union-attr]
