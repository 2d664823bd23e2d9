"""`kubectl auth can-i` (single and --list) against the lab answers what the lab enforces,
for the admin and the read-only identity (issue 15 point 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.kube_lab import Lab, running_lab
from tests.lab.test_kube_apply import KUBECTL, kubectl_as

pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("authz")) as lab:
        yield lab


@pytest.mark.parametrize(
    ("readonly", "args", "allowed"),
    [
        (False, ("list", "secrets", "-n", "flux-system"), True),
        (False, ("delete", "nodes"), True),
        (True, ("list", "secrets", "-n", "flux-system"), False),
        (True, ("get", "pods", "-A"), True),
        (True, ("watch", "kustomizations.kustomize.toolkit.fluxcd.io", "-A"), True),
        (True, ("patch", "nodes"), False),
        (True, ("create", "pods/eviction", "-n", "apps"), False),
        (True, ("get", "/version"), True),
    ],
)
def test_can_i_matches_what_the_server_enforces(
    lab: Lab, readonly: bool, args: tuple[str, ...], allowed: bool
) -> None:
    proc = kubectl_as(lab, "auth", "can-i", *args, readonly=readonly)
    assert proc.stdout.strip() == ("yes" if allowed else "no"), proc.stderr
    assert proc.returncode == (0 if allowed else 1)


def test_enforcement_agrees_with_the_answer(lab: Lab) -> None:
    denied = kubectl_as(lab, "get", "secrets", "-n", "flux-system", readonly=True)
    assert denied.returncode == 1 and "Forbidden" in denied.stderr
    assert kubectl_as(lab, "get", "pods", "-A", readonly=True).returncode == 0


def test_can_i_list(lab: Lab) -> None:
    rows = kubectl_as(lab, "auth", "can-i", "--list", readonly=True).stdout.splitlines()
    table = {line.split()[0]: line.split("]", 2)[-1].strip() for line in rows[1:]}
    assert table["pods"] == "[get list watch]"
    assert table["kustomizations.kustomize.toolkit.fluxcd.io"] == "[get list watch]"
    assert "secrets" not in table
    admin = kubectl_as(lab, "auth", "can-i", "--list").stdout
    assert "*.*" in admin.splitlines()[1]
