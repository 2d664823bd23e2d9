"""Paths in the config file may start with ~, as operators write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dapper.backends.config import load_config


def test_tilde_paths_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text(
        'kubeconfig = "~/dapper/kubeconfig"\n'
        'talosconfig = "~/dapper/talosconfig"\n'
        'repo_path = "~/dapper"\n'
        'sops_age_key_file = "~/dapper/age.key"\n'
        "[proxmox]\n"
        'url = "https://pve:8006"\n'
        'token_id = "a@pam!b"\n'
        'token_secret_file = "~/dapper/pve.secret"\n'
        'ca_file = "~/dapper/ca.pem"\n'
    )
    cfg = load_config(cfg_file)
    home = str(tmp_path)
    assert cfg.kubeconfig == f"{home}/dapper/kubeconfig"
    assert cfg.talosconfig == f"{home}/dapper/talosconfig"
    assert cfg.repo_path == f"{home}/dapper"
    assert cfg.sops_age_key_file == f"{home}/dapper/age.key"
    assert cfg.proxmox.token_secret_file == f"{home}/dapper/pve.secret"
    assert cfg.proxmox.ca_file == f"{home}/dapper/ca.pem"
    assert cfg.lab is False and cfg.mode == "LIVE" and cfg.cluster_name == "dapper"
