"""`dapper-tui runbook resume` needs the configuration the run was made with."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.cli.main import main
from dapper.lab import runtime


def test_resume_without_config_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_lab(**_kw: object) -> None:
        raise AssertionError("resume must not start a new lab")

    monkeypatch.setattr(runtime, "start_lab", no_lab)
    assert main(["runbook", "resume", "20250101-000000-abcdef"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1
    assert "cannot resume 20250101-000000-abcdef on a new lab" in lines[0]
    assert "--config" in lines[0]


def test_resume_with_a_lab_config_goes_to_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with runtime.start_lab(directory=tmp_path / "lab", flux=False) as lab:
        code = main(["--config", str(lab.files.config), "runbook", "resume", "20250101-000000-0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "new lab" not in err and "20250101-000000-0" in err
