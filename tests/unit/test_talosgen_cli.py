"""`dapper-tui talos genconfig` as an operator runs it: a real process, real files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest

from tests.unit.talosgen_support import REPO, bundle_document, copy_repo, talconfig


def _run(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "DAPPER_TUI"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
    )
    return subprocess.run(
        [sys.executable, "-m", "dapper.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _secrets() -> list[str]:
    doc = bundle_document()
    values = [
        doc["cluster"]["id"],
        doc["cluster"]["secret"],
        doc["secrets"]["bootstraptoken"],
        doc["secrets"]["secretboxencryptionsecret"],
        doc["trustdinfo"]["token"],
    ]
    values += [doc["certs"][name]["key"] for name in ("etcd", "k8s", "k8saggregator", "os")]
    return [*values, doc["certs"]["k8sserviceaccount"]["key"]]


def _log_text(home: Path) -> str:
    logs = list((home / "state").rglob("dapper-tui.log*"))
    assert logs, "the command logs to the state directory"
    return "".join(p.read_text() for p in logs)


def test_genconfig_writes_private_files_and_shows_no_secret(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        ["talos", "genconfig", "--repo", str(REPO), "--out", str(out)], tmp_path, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = [f"kubernetes-{n['hostname']}.yaml" for n in talconfig()["nodes"]] + ["talosconfig"]
    assert result.stdout.splitlines() == [f"wrote {out / name}" for name in names]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in names:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert bundle_document()["trustdinfo"]["token"] in (out / names[0]).read_text()
    log = _log_text(tmp_path)
    assert "talos genconfig: wrote 8 files" in log
    client_key = (out / "talosconfig").read_text().split("key: ")[-1].strip()
    for secret in [*_secrets(), client_key]:
        assert secret not in result.stdout + result.stderr + log


def test_default_out_is_the_git_ignored_clusterconfig(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    clusterconfig = root / "kubernetes/bootstrap/talos/clusterconfig"
    shutil.rmtree(clusterconfig)
    result = _run(["talos", "genconfig", "--node", "talos-control-2"], tmp_path, root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrote kubernetes/bootstrap/talos/clusterconfig/kubernetes-talos-control-2.yaml",
        "wrote kubernetes/bootstrap/talos/clusterconfig/talosconfig",
    ]
    assert (clusterconfig / ".gitignore").read_text() == "*\n!.gitignore\n"
    assert stat.S_IMODE(clusterconfig.stat().st_mode) == 0o700


def test_the_real_clusterconfig_is_git_ignored() -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    probe = "kubernetes/bootstrap/talos/clusterconfig/kubernetes-talos-control-1.yaml"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=REPO, check=False)
    assert ignored.returncode == 0


def test_a_wrong_age_key_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    key = tmp_path / "wrong.agekey"
    key.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    config = tmp_path / "config.toml"
    config.write_text(f'cluster_name = "dapper"\nsops_age_key_file = "{key}"\n')
    out = tmp_path / "out"
    result = _run(
        ["--config", str(config), "talos", "genconfig", "--repo", str(REPO), "--out", str(out)],
        tmp_path,
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("dapper-tui talos genconfig: ")
    assert "talsecret.sops.yaml" in line
    assert "decrypts the data key" in line
    assert not out.exists()


def test_an_unknown_node_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        ["talos", "genconfig", "--repo", str(REPO), "--out", str(out), "--node", "talos-node-9"],
        tmp_path,
        tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "dapper-tui talos genconfig: no node talos-node-9 in talconfig.yaml; nodes: "
        "talos-control-1, talos-control-2, talos-control-3, talos-node-gpu-1, "
        "talos-node-large-1, talos-node-large-2, talos-node-large-3"
    ]
    assert not out.exists()


def test_no_talconfig_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(["talos", "genconfig", "--repo", str(tmp_path)], tmp_path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"dapper-tui talos genconfig: {tmp_path}/kubernetes/bootstrap/talos/talconfig.yaml: "
        "no such file"
    ]
