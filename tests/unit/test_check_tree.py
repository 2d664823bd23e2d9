"""`dapper-tui check` on broken copies of the synthetic tree, and on the real tree."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from dapper.backends.gitops.treecheck import Problem, run_checks
from dapper.cli.main import main

REPO = Path(__file__).resolve().parents[2]

HR = "kubernetes/apps/default/podinfo/app/helmrelease.yaml"
PODINFO_KS = "kubernetes/apps/default/podinfo/ks.yaml"
HAS_KUBECTL = shutil.which("kubectl") is not None or shutil.which("kustomize") is not None


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new, 1))


def _errors(root: Path, kustomize: bool = False) -> list[Problem]:
    return [p for p in run_checks(root, use_kustomize=kustomize).problems if p.severity == "error"]


def _find(problems: list[Problem], file: str, text: str) -> Problem:
    hits = [p for p in problems if p.file == file and text in p.reason]
    assert hits, f"no problem at {file} with {text!r} in {[str(p) for p in problems]}"
    return hits[0]


@pytest.mark.skipif(not HAS_KUBECTL, reason="no kustomize or kubectl")
def test_clean_tree_passes_with_kustomize(tree_dir: Path) -> None:
    report = run_checks(tree_dir)
    assert report.ok, [str(p) for p in report.problems]
    assert report.problems == [] and report.kustomizations == 5
    assert report.kustomize_tool


def test_missing_path(tree_dir: Path) -> None:
    _edit(tree_dir, PODINFO_KS, "podinfo/app", "podinfo/nope")
    p = _find(_errors(tree_dir), PODINFO_KS, "does not exist")
    assert p.line == 1 and "./kubernetes/apps/default/podinfo/nope" in p.reason


def test_depends_on_cycle_and_unknown_dependency(tree_dir: Path) -> None:
    _edit(
        tree_dir,
        "kubernetes/apps/default/echo/ks.yaml",
        "  prune: true\n",
        "  prune: true\n  dependsOn:\n    - name: podinfo\n    - name: ghost\n",
    )
    errors = _errors(tree_dir)
    cycle = [p for p in errors if "dependsOn cycle" in p.reason]
    assert len(cycle) == 1 and "default/echo" in cycle[0].reason
    assert "default/podinfo" in cycle[0].reason
    ghost = _find(errors, "kubernetes/apps/default/echo/ks.yaml", "default/ghost")
    assert "no Kustomization defines" in ghost.reason and ghost.line == 14


def test_unknown_chart_source(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "name: podinfo\n        namespace", "name: nowhere\n        namespace")
    p = _find(_errors(tree_dir), HR, "HelmRepository flux-system/nowhere is not defined")
    assert p.line == 11  # the sourceRef line


def test_unknown_chart_ref(tree_dir: Path) -> None:
    hr = "kubernetes/apps/default/echo/app/helmrelease.yaml"
    _edit(tree_dir, hr, "name: app-template", "name: app-templat")
    _find(_errors(tree_dir), hr, "chartRef OCIRepository default/app-templat is not defined")


def test_unpinned_chart(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "version: 6.5.4", "version: '>=6.0.0'")
    p = _find(_errors(tree_dir), HR, "not pinned")
    assert "'>=6.0.0' is a range" in p.reason and p.line == 10


def test_undefined_variable(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "tz: ${TIMEZONE}", "tz: ${TIMEZONE}\n    region: ${NOPE}")
    p = _find(_errors(tree_dir), HR, "undefined variable ${NOPE}")
    assert p.line == 21 and "default/podinfo" in p.reason


def test_defaults_and_secret_keys_are_defined(tree_dir: Path) -> None:
    _edit(
        tree_dir,
        HR,
        "tz: ${TIMEZONE}",
        "tz: ${TIMEZONE}\n    a: ${NOPE:=x}\n    b: ${SECRET_DOMAIN}",
    )
    assert not [p for p in _errors(tree_dir) if "undefined" in p.reason]


def test_plaintext_secret(tree_dir: Path) -> None:
    app = tree_dir / "kubernetes/apps/default/podinfo/app"
    (app / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: hunter2\n"
    )
    _edit(tree_dir, "kubernetes/apps/default/podinfo/app/kustomization.yaml",
          "  - ./helmrelease.yaml\n", "  - ./helmrelease.yaml\n  - ./secret.yaml\n")  # fmt: skip
    p = _find(
        _errors(tree_dir), "kubernetes/apps/default/podinfo/app/secret.yaml", "plaintext Secret"
    )
    assert p.line == 1 and "Secret creds" in p.reason


def test_plaintext_secret_values_and_keys(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "tz: ${TIMEZONE}", "tz: ${TIMEZONE}\n    adminPassword: hunter2\n"
          "    existingSecret: podinfo-secret\n    apiToken: ${SECRET_DOMAIN}")  # fmt: skip
    cm = tree_dir / "kubernetes/apps/default/podinfo/app/helm-values.yaml"
    cm.write_text(cm.read_text() + "tls:\n  key: |\n    -----BEGIN EC PRIVATE KEY-----\n    x\n")
    errors = _errors(tree_dir)
    p = _find(errors, HR, "spec.values.adminPassword looks like a secret")
    assert p.line == 21
    assert not [e for e in errors if "existingSecret" in e.reason or "apiToken" in e.reason]
    _find(errors, "kubernetes/apps/default/podinfo/app/helm-values.yaml", "PEM private key")


def test_malformed_yaml(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "  interval: 30m\n", "  interval: [30m\n")
    p = _find(_errors(tree_dir), HR, "malformed YAML")
    assert p.line >= 6


def test_sops_file_outside_the_rules(tree_dir: Path) -> None:
    _edit(tree_dir, ".sops.yaml", "path_regex: kubernetes/", "path_regex: kubernetes/apps/")
    p = _find(
        _errors(tree_dir),
        "kubernetes/components/common/cluster-secrets.sops.yaml",
        "matches no creation rule",
    )
    assert p.line == 1


def test_sops_structure(tree_dir: Path) -> None:
    rel = "kubernetes/components/common/cluster-secrets.sops.yaml"
    path = tree_dir / rel
    text = path.read_text()
    start = text.index("SECRET_DOMAIN: ENC[")
    end = text.index("\n", start)
    path.write_text(text[:start] + "SECRET_DOMAIN: example.org" + text[end:])
    p = _find(_errors(tree_dir), rel, "stringData.SECRET_DOMAIN")
    assert "not an ENC[AES256_GCM" in p.reason and p.line == text.count("\n", 0, start) + 1
    unencrypted = tree_dir / "kubernetes/apps/default/podinfo/app/plain.sops.yaml"
    unencrypted.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: p\nstringData:\n  a: b\n"
    )
    _find(
        _errors(tree_dir), "kubernetes/apps/default/podinfo/app/plain.sops.yaml", "no sops metadata"
    )


def test_schema_problems(tree_dir: Path) -> None:
    _edit(tree_dir, PODINFO_KS, "interval: 30m", "interval: thirty")
    ns = tree_dir / "kubernetes/components/common/namespace.yaml"
    ns.write_text(ns.read_text() + "spec:\n  finalizers: kubernetes\n")
    errors = _errors(tree_dir)
    _find(errors, PODINFO_KS, "spec.interval")
    _find(errors, "kubernetes/components/common/namespace.yaml", "spec.finalizers")


def test_no_kustomize_is_one_line_and_other_checks_still_run(
    tree_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    _edit(tree_dir, HR, "version: 6.5.4", "version: '*'")
    rc = main(["check", "--repo", str(tree_dir)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert sum("no kustomize or kubectl on PATH" in line for line in out) == 1
    assert any(line.startswith(f"{HR}:10: HelmRelease default/podinfo") for line in out)
    assert out[-1] == "checked 5 Flux Kustomizations, 1 problem, 1 warning"


@pytest.mark.skipif(not HAS_KUBECTL, reason="no kustomize or kubectl")
def test_kustomize_failure_is_reported(tree_dir: Path) -> None:
    # A duplicate key kustomize rejects (the renderer too); kustomize's reason wins.
    _edit(
        tree_dir,
        "kubernetes/apps/default/podinfo/app/kustomization.yaml",
        "  - ./helmrelease.yaml\n",
        "  - ./helmrelease.yaml\n  - ./helmrelease.yaml\n",
    )
    p = _find(_errors(tree_dir, kustomize=True), PODINFO_KS, "kustomize build")
    assert "./kubernetes/apps/default/podinfo/app failed" in p.reason


def test_json_output(tree_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(tree_dir, HR, "version: 6.5.4", "version: ''")
    rc = main(["check", "--repo", str(tree_dir), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["ok"] is False and data["kustomizations"] == 5
    hit = [p for p in data["problems"] if p["file"] == HR]
    assert hit and hit[0]["severity"] == "error" and "no version" in hit[0]["reason"]
    assert set(hit[0]) == {"file", "line", "severity", "reason"}


@pytest.mark.skipif(
    not (REPO / "kubernetes/apps").is_dir(), reason="kubernetes/ tree not written yet"
)
def test_real_tree_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "--repo", str(REPO)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0, "\n".join(out)
    summary = out[-1].split()
    assert summary[0] == "checked" and int(summary[1]) >= 30, out[-1]


def test_cli_refuses_a_directory_without_a_tree(tmp_path: Path, capsys) -> None:
    assert main(["check", "--repo", str(tmp_path)]) == 1
    assert "no kubernetes/ directory" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_node_labels_nodeRestriction_forbids(tree_dir: Path) -> None:
    talos = tree_dir / "kubernetes/bootstrap/talos"
    (talos / "patches").mkdir(parents=True)
    (talos / "talconfig.yaml").write_text(
        "clusterName: k\nnodes:\n  - hostname: w1\n    nodeLabels:\n"
        "      topology.kubernetes.io/zone: a\n      node-role.kubernetes.io/worker: ''\n"
    )
    (talos / "patches/storage.yaml").write_text(
        "machine:\n  nodeLabels:\n    openebs.io/engine: mayastor\n"
        "    node.kubernetes.io/instance-type: storage\n    node-role.home.arpa/storage: ssd\n"
        "    example.k8s.io/tier: fast\n  kubelet:\n    extraArgs:\n"
        "      node-labels: kubelet.kubernetes.io/ok=1,node-restriction.kubernetes.io/x=1\n"
    )
    errors = _errors(tree_dir)
    talconfig = _find(
        errors, "kubernetes/bootstrap/talos/talconfig.yaml", "node-role.kubernetes.io"
    )
    assert talconfig.line == 6 and "NodeRestriction" in talconfig.reason
    patch = "kubernetes/bootstrap/talos/patches/storage.yaml"
    assert _find(errors, patch, "example.k8s.io/tier").line == 6
    assert _find(errors, patch, "node-restriction.kubernetes.io/x").line == 9
    allowed = (
        "topology.kubernetes.io/zone",
        "openebs.io",
        "instance-type",
        "home.arpa/",
        "kubelet.",
    )
    assert not [p for p in errors if any(f"label {a}" in p.reason for a in allowed)]


def test_diskpool_on_a_kernel_device_name(tree_dir: Path) -> None:
    app = tree_dir / "kubernetes/apps/default/podinfo/app"
    (app / "pools.yaml").write_text(
        "---\napiVersion: openebs.io/v1beta3\nkind: DiskPool\nmetadata:\n  name: a\nspec:\n"
        "  node: a\n  disks:\n    - /dev/disk/by-id/wwn-0x5002538000000001\n---\n"
        "apiVersion: openebs.io/v1beta3\nkind: DiskPool\nmetadata:\n  name: b\nspec:\n"
        "  node: b\n  disks:\n    - /dev/nvme0n1\n    - aio:///dev/sdb\n"
    )
    errors = _errors(tree_dir)
    rel = "kubernetes/apps/default/podinfo/app/pools.yaml"
    nvme = _find(errors, rel, "disk /dev/nvme0n1 is a kernel device name")
    assert nvme.line == 18 and "DiskPool b" in nvme.reason and "by-id" in nvme.reason
    assert _find(errors, rel, "aio:///dev/sdb").line == 19
    assert not [p for p in errors if "DiskPool a" in p.reason]


def test_file_references_that_do_not_exist(tree_dir: Path) -> None:
    _edit(tree_dir, HR, "  interval: 30m\n", "  # see docs/nowhere.md and ./helm-values.yaml\n"
          "  interval: 30m  # values: app/helm-values.yaml (https://x.io/a/b.yaml)\n")  # fmt: skip
    (tree_dir / "README.md").write_text(
        "# t\n\nRead `kubernetes/components/common/namespace.yaml` and lab/keys/gone.txt.\n"
        "```sh\nls run-dir/kubeconfig.yaml\n```\n"
    )
    errors = _errors(tree_dir)
    p = _find(errors, HR, "docs/nowhere.md")
    assert p.line == 6 and "comment refers to" in p.reason and "does not exist" in p.reason
    assert _find(errors, "README.md", "lab/keys/gone.txt").line == 3
    refs = [p for p in errors if "refers to" in p.reason]
    assert len(refs) == 2, [str(p) for p in refs]
