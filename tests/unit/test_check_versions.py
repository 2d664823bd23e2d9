"""`check` fails when talhelper's and the cluster's Talos/Kubernetes versions disagree."""

from __future__ import annotations

import shutil
from pathlib import Path

from dapper.backends.gitops.treecheck import run_checks
from dapper.backends.gitops.versioncheck import TALENV, VERSIONS_ENV, version_mismatches

REPO = Path(__file__).resolve().parents[2]


def copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "kubernetes", root / "kubernetes", symlinks=True)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    return root


def test_the_real_tree_agrees() -> None:
    assert list(version_mismatches(REPO)) == []


def test_a_bump_of_one_file_only_is_reported_with_file_and_line(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    talenv = root / TALENV
    talenv.write_text(
        talenv.read_text().replace("TALOS_VERSION: v1.11.2", "TALOS_VERSION: v1.11.3")
    )
    report = run_checks(root, use_kustomize=False)
    mine = [p for p in report.problems if p.file == TALENV]
    assert len(mine) == 1 and mine[0].line > 1
    assert "TALOS_VERSION v1.11.3 differs from" in mine[0].reason and VERSIONS_ENV in mine[0].reason
    assert not report.ok


def test_a_missing_version_is_reported(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    env = root / VERSIONS_ENV
    env.write_text("\n".join(ln for ln in env.read_text().splitlines() if "KUBERNETES" not in ln))
    assert [r for _, _, r in version_mismatches(root)] == [
        "KUBERNETES_VERSION is not set (the upgrade Plans need it)"
    ]
