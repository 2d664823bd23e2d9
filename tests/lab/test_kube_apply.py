"""kubectl apply (client-side with validation, server-side with field managers), diff and
explain against the lab API server, as a new user would run them (issue 15 points 1, 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import requests
from dapper.lab.kinds import by_kind
from kubernetes.client.exceptions import ApiException

from kubernetes import client, config
from tests.lab.kube_lab import Lab, running_lab, writes

KUBECTL = shutil.which("kubectl") or ""
pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")

CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  namespace: default
data:
  colour: {colour}
  size: large
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("apply")) as lab:
        yield lab


def kubectl_as(
    lab: Lab, *args: str, stdin: str = "", readonly: bool = False
) -> subprocess.CompletedProcess:
    """kubectl as a user runs it: its own HOME (discovery cache), the lab's kubeconfig."""
    home = lab.tmp / "home"
    home.mkdir(exist_ok=True)
    config = lab.readonly if readonly else lab.admin
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(config), "--request-timeout=20s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def kubectl(lab: Lab, *args: str, stdin: str = "", ok: bool = True) -> subprocess.CompletedProcess:
    proc = kubectl_as(lab, *args, stdin=stdin)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def live(lab: Lab, name: str) -> dict:
    return lab.world.store.get(by_kind("", "ConfigMap"), "default", name)


def test_client_side_apply_validates_against_openapi(lab: Lab) -> None:
    cm = CONFIGMAP.format(name="csa", colour="red")
    assert "created" in kubectl(lab, "apply", "-f", "-", stdin=cm).stdout
    assert "unchanged" in kubectl(lab, "apply", "-f", "-", stdin=cm).stdout
    out = kubectl(lab, "apply", "-f", "-", stdin=cm.replace("red", "blue")).stdout
    assert "configured" in out
    obj = live(lab, "csa")
    assert obj["data"]["colour"] == "blue"
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    # an unknown field is refused by server-side field validation, as kubectl asks for it
    bad = cm.replace("\ndata:", "\ndta:\n  x: y\ndata:")
    proc = kubectl(lab, "apply", "-f", "-", stdin=bad, ok=False)
    assert proc.returncode != 0 and 'unknown field "dta"' in proc.stderr


def test_server_side_apply_conflicts_name_the_other_manager(lab: Lab) -> None:
    cm = CONFIGMAP.format(name="ssa", colour="red")
    assert (
        "serverside-applied" in kubectl(lab, "apply", "--server-side", "-f", "-", stdin=cm).stdout
    )
    proc = kubectl(
        lab,
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "-f",
        "-",
        stdin=cm.replace("red", "green"),
        ok=False,
    )
    assert proc.returncode != 0
    assert 'conflict with "kubectl" using v1: .data.colour' in proc.stderr
    assert live(lab, "ssa")["data"]["colour"] == "red"
    # the Status a client reads: reason Conflict, one FieldManagerConflict cause per field
    api = client.CoreV1Api(config.new_client_from_config(str(lab.admin)))
    body = {"metadata": {"name": "ssa"}, "data": {"colour": "blue", "size": "small"}}
    with pytest.raises(ApiException) as caught:
        api.patch_namespaced_config_map(
            "ssa",
            "default",
            body,
            field_manager="script",
            _content_type="application/apply-patch+yaml",
        )
    status = json.loads(caught.value.body)
    assert (caught.value.status, status["reason"]) == (409, "Conflict")
    assert status["message"].startswith('Apply failed with 2 conflicts: conflicts with "kubectl"')
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl" using v1',
            "field": f,
        }
        for f in (".data.colour", ".data.size")
    ]
    kubectl(
        lab,
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "--force-conflicts",
        "-f",
        "-",
        stdin=cm.replace("red", "green"),
    )
    obj = live(lab, "ssa")
    assert obj["data"]["colour"] == "green"
    owners = {e["manager"]: e["fieldsV1"] for e in obj["metadata"]["managedFields"]}
    assert owners["deployer"]["f:data"] == {"f:colour": {}, "f:size": {}}
    assert owners["kubectl"]["f:data"] == {"f:size": {}}  # colour was taken by force


def test_server_side_apply_removes_fields_its_manager_dropped(lab: Lab) -> None:
    cm = CONFIGMAP.format(name="drop", colour="red")
    kubectl(lab, "apply", "--server-side", "-f", "-", stdin=cm)
    kubectl(lab, "apply", "--server-side", "-f", "-", stdin=cm.replace("  size: large\n", ""))
    assert live(lab, "drop")["data"] == {"colour": "red"}


def test_diff_is_a_dry_run(lab: Lab) -> None:
    cm = CONFIGMAP.format(name="diffed", colour="red")
    kubectl(lab, "apply", "-f", "-", stdin=cm)
    rv = live(lab, "diffed")["metadata"]["resourceVersion"]
    count = len(writes(lab.world))
    proc = kubectl(lab, "diff", "-f", "-", stdin=cm.replace("red", "blue"), ok=False)
    assert proc.returncode == 1, proc.stderr  # 1: differences found
    assert "-  colour: red" in proc.stdout and "+  colour: blue" in proc.stdout
    obj = live(lab, "diffed")
    assert obj["data"]["colour"] == "red" and obj["metadata"]["resourceVersion"] == rv
    assert len(writes(lab.world)) == count


def test_readme_rekeying_step_applies_the_secret_server_side(lab: Lab) -> None:
    made = kubectl(
        lab,
        "-n",
        "flux-system",
        "create",
        "secret",
        "generic",
        "sops-age",
        "--from-file=age.agekey=/dev/stdin",
        "--dry-run=client",
        "-o",
        "yaml",
        stdin="AGE-SECRET-KEY-1LABONLY\n",
    ).stdout
    assert (
        "serverside-applied" in kubectl(lab, "apply", "--server-side", "-f", "-", stdin=made).stdout
    )
    secret = lab.world.store.get(by_kind("", "Secret"), "flux-system", "sops-age")
    assert set(secret["data"]) == {"age.agekey"}
    assert secret["metadata"]["creationTimestamp"]


def test_explain_core_and_custom_kinds(lab: Lab) -> None:
    pods = kubectl(lab, "explain", "pods.spec.containers").stdout
    assert "FIELD: containers <[]Container>" in pods and "image\t<string>" in pods
    ks = kubectl(lab, "explain", "kustomizations.spec").stdout
    assert "GROUP:      kustomize.toolkit.fluxcd.io" in ks and "sourceRef" in ks
    assert "DiskPool" in kubectl(lab, "explain", "diskpools").stdout
    assert "HelmRelease" in kubectl(lab, "explain", "hr").stdout


def test_python_client_server_side_apply(lab: Lab) -> None:
    api = client.CoreV1Api(config.new_client_from_config(str(lab.admin)))
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "from-python", "namespace": "default"},
        "data": {"k": "v"},
    }
    made = api.patch_namespaced_config_map(
        "from-python",
        "default",
        body,
        field_manager="script",
        _content_type="application/apply-patch+yaml",
    )
    assert made.data == {"k": "v"}
    assert [e.manager for e in made.metadata.managed_fields] == ["script"]
    ca = lab.tmp / "ca.pem"
    ca.write_bytes(lab.pki.https_ca.cert_pem)
    doc = requests.get(
        f"https://127.0.0.1:{lab.server.port}/openapi/v2",
        headers={
            "Accept": "application/json",
            "Authorization": f"Bearer {lab.creds.kube_admin_token}",
        },
        verify=str(ca),
        timeout=10,
    ).json()
    assert "io.k8s.api.v1.ConfigMap" in doc["definitions"]
