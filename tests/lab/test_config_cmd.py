"""`dapper-tui config check|show` on the config file a lab writes, and on broken variants.

Each problem is one line naming what is wrong; the real clients do the probing, against
the lab's real sockets; no traceback ever reaches the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.cli.main import main
from dapper.lab.runtime import RunningLab, start_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(directory=tmp_path_factory.mktemp("config-lab")) as lab:
        yield lab


def variant(lab: RunningLab, tmp_path: Path, **changes: str) -> Path:
    """The lab's config.toml with `key = value` lines replaced (or added to [proxmox])."""
    text = lab.files.config.read_text()
    for key, value in changes.items():
        line = f"{key} = {value}"
        text, n = re.subn(rf"(?m)^{key} = .*$", line.replace("\\", "\\\\"), text)
        if not n:
            text = text.replace("[proxmox]\n", f"[proxmox]\n{line}\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def config_cmd(path: Path, action: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", str(path), "config", action])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_lab_config_checks_ok(lab: RunningLab, capsys: pytest.CaptureFixture[str]) -> None:
    assert lab.files.config.name == "config.toml"
    code, out, err = config_cmd(lab.files.config, "check", capsys)
    assert (code, out, err) == (0, "config ok\n", "")


def test_show_names_every_source_and_no_secret(
    lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = config_cmd(lab.files.config, "show", capsys)
    assert code == 0 and err == ""
    assert f"source      {lab.files.config}" in out
    assert f"kubeconfig  {lab.files.kubeconfig} context=lab-admin" in out
    assert f"talosconfig {lab.files.talosconfig} context=lab-admin" in out
    assert f"secret from {lab.files.pve_admin_secret}" in out
    assert lab.files.pve_admin_secret.read_text().strip() not in out


def test_a_missing_kubeconfig_is_one_line(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.kubeconfig"
    code, out, err = config_cmd(variant(lab, tmp_path, kubeconfig=f'"{missing}"'), "check", capsys)
    assert code == 1 and err == ""
    assert out.splitlines() == [f"kubeconfig: {missing} does not exist"]


def test_a_token_secret_in_the_config_is_refused(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = variant(lab, tmp_path, token_secret='"0b5e55ed-5ec2-e7f0-0000-000000000000"')
    for action in ("check", "show"):
        code, out, err = config_cmd(path, action, capsys)
        assert code == 2 and out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and "proxmox.token_secret must not be in the config" in lines[0]
        assert "0b5e55ed" not in err


def test_a_missing_proxmox_token_file(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "pve.secret"
    path = variant(lab, tmp_path, token_secret_file=f'"{missing}"')
    code, out, err = config_cmd(path, "check", capsys)
    assert code == 1 and err == ""
    assert out.splitlines() == [f"proxmox token file {missing}: No such file or directory"]


def test_an_unreachable_api_names_the_source_and_reason(
    lab: RunningLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.world.inject("api-down:kubernetes")
    try:
        code, out, err = config_cmd(lab.files.config, "check", capsys)
    finally:
        lab.world.clear("api-down:kubernetes")
    assert code == 1 and err == ""  # the details went to the log file, not the terminal
    url = lab.world.endpoints["kubernetes"]
    assert out.splitlines() == [f"kubernetes: connection refused ({url})"]


def test_a_wrong_talosconfig_context(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = variant(lab, tmp_path, talos_context='"prod"')
    code, out, err = config_cmd(path, "check", capsys)
    assert code == 1 and err == ""
    assert out.splitlines() == [f"talosconfig {lab.files.talosconfig}: no context 'prod'"]
