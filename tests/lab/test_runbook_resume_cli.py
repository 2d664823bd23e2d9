"""`dapper-tui runbook resume` needs the configuration the run was made with."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.actions.journal import Journal
from dapper.cli.main import main
from dapper.lab import runtime


def test_resume_without_config_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def no_lab(**_kw: object) -> None:
        raise AssertionError("resume must not start a new lab")

    monkeypatch.setattr(runtime, "start_lab", no_lab)
    assert main(["runbook", "resume", "20250101-000000-abcdef"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "dapper-tui runbook: no run 20250101-000000-abcdef (dapper-tui runbook list shows the runs)"
    ]

    kept = Journal.create("20250101-000000-aaaaaa")  # made with a config: its repo exists
    kept.start(run_id="r", runbook="rekey", params={}, operator="", repo=str(tmp_path), head="")
    assert main(["runbook", "resume", "20250101-000000-aaaaaa"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "cannot resume 20250101-000000-aaaaaa on a new lab" in lines[0]
    assert "--config" in lines[0]

    gone = Journal.create("20250101-000000-bbbbbb")  # a built-in lab's scratch clone, gone
    gone.start(
        run_id="r", runbook="rekey", params={}, operator="", repo=str(tmp_path / "x"), head=""
    )
    assert main(["runbook", "resume", "20250101-000000-bbbbbb"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "was made on a built-in lab that has stopped" in lines[0]
    assert main(["runbook", "list"]) == 0
    listed = capsys.readouterr().out
    assert "20250101-000000-bbbbbb" in listed and "(its lab is gone: not resumable)" in listed


def test_resume_with_a_lab_config_goes_to_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with runtime.start_lab(directory=tmp_path / "lab", flux=False) as lab:
        code = main(["--config", str(lab.files.config), "runbook", "resume", "20250101-000000-0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "new lab" not in err and "20250101-000000-0" in err
