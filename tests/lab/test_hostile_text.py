"""Whatever a cluster says is untrusted: terminal escapes and control characters in names,
messages and conditions from Kubernetes, Proxmox, Talos and Git never reach `status`'s
output (text or JSON) as themselves; they arrive as visible pictures (ESC -> ␛)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from dapper.cli.main import main
from dapper.lab.runtime import RunningLab, start_lab

from tests.lab.hostile import ESCAPES, seed_hostile

CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def hostile_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(directory=tmp_path_factory.mktemp("hostile"), flux=False) as lab:
        seed_hostile(lab)
        yield lab


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_status_text_carries_no_control_character(
    hostile_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--config", str(hostile_lab.files.config), "status"])
    out, err = capsys.readouterr()
    assert CONTROL.search(out + err) is None, repr(out)
    shown = "✗ nodes  evil␛[2J␛]0;PWNED␇�31m�␍␈[/]  NotReady (Ready=False"
    assert shown in out  # shown, not obeyed


def test_status_json_decodes_to_no_control_character(
    hostile_lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--config", str(hostile_lab.files.config), "status", "--json"])
    out, _ = capsys.readouterr()
    found = list(strings(json.loads(out)))
    bad = [s for s in found if CONTROL.search(s)]
    assert bad == []
    joined = "\n".join(found)
    for seen in (
        "evil␛[2J",
        "kubelet says ␛[2J",
        "kustomize build failed: ␛[2J",
        "vm␛[2J",
        "Stuck␛[2J",
    ):
        assert seen in joined, seen


def test_git_history_is_cleaned(tmp_path: Path) -> None:
    """Anyone who can push writes commit text: a scratch repository of the test's own."""
    from dapper.backends.clients.gitrepo import GitRepo

    repo = pygit2.init_repository(str(tmp_path / "repo"), initial_head="main")
    sig = pygit2.Signature(f"mallory{ESCAPES}", "m@example.invalid")
    repo.create_commit("HEAD", sig, sig, f"evil {ESCAPES}\n", repo.TreeBuilder().write(), [])
    newest = GitRepo.open(tmp_path / "repo").log(n=1)[0]
    assert newest.summary == "evil ␛[2J␛]0;PWNED␇\ufffd31m\ufffd␍␈[/]"
    assert newest.author.startswith("mallory␛[2J")


def test_error_reasons_are_cleaned() -> None:
    from dapper.backends.errors import BackendError

    assert BackendError(f"server said {ESCAPES}").reason == (
        "server said ␛[2J␛]0;PWNED␇\ufffd31m\ufffd␍␈[/]"
    )
