"""Every config key is checked against its type: one line naming key and type, never a
traceback and never a different meaning (a quoted "false" is not a boolean)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dapper.backends.config import ConfigError, load_config

WRONG = [
    ("kubeconfig = 5", "kubeconfig must be a string, not a number"),
    ('proxmox = "x"', 'proxmox must be a table, not the string "x"'),
    ('read_only = "false"', 'read_only must be true or false, not the string "false"'),
    ("[proxmox]\nverify_tls = 0", "proxmox.verify_tls must be true or false, not a number"),
    ("[proxmox]\nurl = ['a']", "proxmox.url must be a string, not an array"),
    ("repo_branch = true", "repo_branch must be a string, not a boolean"),
    ("[proxmox]\nbogus = 1", "unknown config key(s): proxmox.bogus"),
]


@pytest.mark.parametrize(("body", "reason"), WRONG)
def test_wrong_types_are_one_line(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {reason}"


def test_right_types_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('read_only = true\nkubeconfig = "/k"\n[proxmox]\nverify_tls = false\n')
    cfg = load_config(path)
    assert cfg.read_only is True and cfg.kubeconfig == "/k"
    assert cfg.proxmox.verify_tls is False


@pytest.mark.parametrize("command", [[], ["status"], ["config", "check"]])
def test_cli_exits_2_with_the_reason(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text('read_only = "false"\n')
    done = subprocess.run(
        [sys.executable, "-m", "dapper.cli.main", "--config", str(path), *command],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert "read_only must be true or false" in out
    assert "Traceback" not in out
