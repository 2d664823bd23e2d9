"""A malformed journal is one line naming the file, and never hides the other runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dapper.actions.journal import Journal, JournalError, list_runs, read_run, runs_dir
from dapper.cli.main import main

GOOD = "20260101-000000-aaaaaa"
BAD = {
    "20260101-000001-bbbbbb": b'[1, 2]\n{"type": "end", "ok": true}\n',
    "20260101-000002-cccccc": b'{"type": "start", "runbook": "x\xff\xfe"}\n',
    "20260101-000003-dddddd": b'{"type": "start", "params": [1]}\n',
    "20260101-000004-eeeeee": b'{"type": "start"}\nnot json\n{"type": "end", "ok": true}\n',
    "20260101-000005-ffffff": b'"just a string"\n',
}
REASONS = {
    "20260101-000001-bbbbbb": "line 1 is not a JSON object",
    "20260101-000002-cccccc": "not UTF-8 (byte 31)",
    "20260101-000003-dddddd": "line 1: params has the wrong type",
    "20260101-000004-eeeeee": "line 2 is not JSON",
    "20260101-000005-ffffff": "line 1 is not a JSON object",
}


@pytest.fixture
def journals() -> Path:
    good = Journal.create(GOOD)
    good.start(run_id=GOOD, runbook="rekey", params={}, operator="op", repo="/r", head="abc")
    good.append({"type": "step", "step": "sync", "phase": "verified"})
    # a crash can cut the last line short: that is tolerated
    with good.path.open("a") as handle:
        handle.write('{"type": "step", "st')
    for run_id, body in BAD.items():
        (runs_dir() / f"{run_id}.jsonl").write_bytes(body)
    return runs_dir()


def test_bad_files_are_skipped_with_one_line_each(journals: Path) -> None:
    problems: list[str] = []
    runs = list_runs(problems=problems)
    assert [r.run_id for r in runs] == [GOOD]
    assert runs[0].steps == {"sync": "verified"} and runs[0].status == "unfinished"
    assert sorted(problems) == sorted(f"{rid}.jsonl: {why}" for rid, why in REASONS.items())
    for run_id in BAD:
        with pytest.raises(JournalError):
            read_run(journals / f"{run_id}.jsonl")


def test_null_params_read_as_none_given(journals: Path) -> None:
    path = journals / "20260101-000009-999999.jsonl"
    path.write_text(json.dumps({"type": "start", "runbook": "rekey", "params": None}) + "\n")
    assert read_run(path).params == {}


def test_cli_lists_the_good_runs_and_resume_names_the_bad_file(
    journals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runbook", "list"]) == 0
    out, err = capsys.readouterr()
    assert GOOD in out
    assert err.count("dapper-tui runbook: skipped unreadable journal ") == len(BAD)
    assert "Traceback" not in out + err

    config = journals.parent / "config.toml"
    config.write_text(f'repo_path = "{journals.parent}"\n')
    assert main(["--config", str(config), "runbook", "resume", "20260101-000001-bbbbbb"]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and "20260101-000001-bbbbbb.jsonl: line 1 is not a JSON object" in err
