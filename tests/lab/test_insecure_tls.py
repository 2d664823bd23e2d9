"""Insecure TLS is never silent: `config check` and `status` (text and JSON) name each API
whose server certificate goes unverified, and the snapshot carries it to the console."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.config import load_config
from dapper.backends.tls_posture import insecure_tls
from dapper.cli.main import main
from dapper.lab.runtime import RunningLab, start_lab

KUBE_LINE = (
    "kubernetes: TLS verification is off (insecure-skip-tls-verify in {} (context lab-admin))"
)
PVE_LINE = "proxmox: TLS verification is off (verify_tls = false)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with start_lab(directory=tmp_path_factory.mktemp("tls-lab"), flux=False) as lab:
        yield lab


def insecure_config(lab: RunningLab, tmp_path: Path) -> tuple[Path, Path]:
    kubeconfig = json.loads(lab.files.kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    kube_path = tmp_path / "kubeconfig"
    kube_path.write_text(json.dumps(kubeconfig))
    text = lab.files.config.read_text()
    text = re.sub(r"(?m)^kubeconfig = .*$", f'kubeconfig = "{kube_path}"', text)
    text = text.replace("[proxmox]\n", "[proxmox]\nverify_tls = false\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path, kube_path


def test_the_lab_is_verified(lab: RunningLab) -> None:
    assert insecure_tls(load_config(lab.files.config)) == ()


def test_config_check_names_each_insecure_api(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, kube_path = insecure_config(lab, tmp_path)
    code = main(["--config", str(path), "config", "check"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), out
    assert out.splitlines() == [
        "warning: " + KUBE_LINE.format(kube_path),
        "warning: " + PVE_LINE,
        "config ok",
    ]


def test_status_says_so_in_text_and_json(
    lab: RunningLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, kube_path = insecure_config(lab, tmp_path)
    main(["--config", str(path), "status"])
    out, _ = capsys.readouterr()
    assert f"! insecure {KUBE_LINE.format(kube_path)}" in out.splitlines()
    assert f"! insecure {PVE_LINE}" in out.splitlines()
    main(["--config", str(path), "status", "--json"])
    out, _ = capsys.readouterr()
    assert json.loads(out)["insecure_tls"] == [KUBE_LINE.format(kube_path), PVE_LINE]
