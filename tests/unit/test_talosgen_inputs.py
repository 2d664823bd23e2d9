"""talconfig.yaml and the secret bundle as the runbooks read them, and their refusals."""

from __future__ import annotations

from pathlib import Path

import pyrage
import pytest
from dapper.backends.sops.errors import NoKeyError, WrongKeyError
from dapper.backends.talosgen.generate import generate_configs
from dapper.backends.talosgen.secrets import load_secret_bundle
from dapper.backends.talosgen.talconfig import TalConfigError, load_talconfig

from tests.unit.talosgen_support import (
    REPO,
    TALOS,
    bundle_document,
    copy_repo,
    identities,
    talconfig,
    talenv,
)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_talconfig_fields_for_the_runbooks() -> None:
    tc = load_talconfig(REPO)
    raw = talconfig()
    text = (TALOS / "talconfig.yaml").read_text()
    assert tc.path == TALOS / "talconfig.yaml"
    assert tc.cluster_name == raw["clusterName"]
    assert tc.endpoint == raw["endpoint"]
    assert tc.talos_version == talenv()["TALOS_VERSION"]
    assert tc.kubernetes_version == talenv()["KUBERNETES_VERSION"]
    assert [n.hostname for n in tc.nodes] == [n["hostname"] for n in raw["nodes"]]
    for node, want in zip(tc.nodes, raw["nodes"], strict=True):
        assert node.ip == want["ipAddress"]
        assert node.control_plane is want["controlPlane"]
        assert node.role == ("controlplane" if want["controlPlane"] else "worker")
        assert node.install_disk == want["installDisk"]
        assert node.image == f"{want['talosImageURL']}:{talenv()['TALOS_VERSION']}"
        assert node.macs == tuple(
            i["deviceSelector"]["hardwareAddr"].lower() for i in want["networkInterfaces"]
        )
        role = raw["controlPlane"]["patches"] if want["controlPlane"] else []
        assert node.patches == tuple(want.get("patches", []))
        assert node.role_patches == tuple(role)
        assert node.line == _line_of(text, f"- hostname: {node.hostname}")
    assert tc.node("talos-node-gpu-1") is tc.nodes[3]
    assert tc.node("nope") is None


def test_macs_are_lower_case(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    path = root / "kubernetes/bootstrap/talos/talconfig.yaml"
    path.write_text(path.read_text().replace("bc:24:11:e0:17:19", "BC:24:11:E0:17:19"))
    assert load_talconfig(root).node("talos-node-large-2").macs == ("bc:24:11:e0:17:19",)  # type: ignore[union-attr]


def test_secret_bundle_repr_shows_no_value() -> None:
    bundle = load_secret_bundle(REPO, identities())
    raw = bundle_document()
    assert bundle.trustd_token == raw["trustdinfo"]["token"]
    shown = repr(bundle) + str(bundle) + repr(bundle.os)
    for value in (
        raw["trustdinfo"]["token"],
        raw["secrets"]["bootstraptoken"],
        raw["cluster"]["secret"],
        raw["certs"]["os"]["key"][:40],
    ):
        assert value not in shown
    assert "talsecret.sops.yaml" in repr(bundle)


def test_a_wrong_age_key_is_refused_in_one_line_naming_talsecret() -> None:
    wrong = [pyrage.x25519.Identity.generate()]
    with pytest.raises(WrongKeyError) as caught:
        generate_configs(REPO, wrong)
    message = str(caught.value)
    assert "\n" not in message
    assert "talsecret.sops.yaml" in message
    with pytest.raises(NoKeyError, match=r"talsecret\.sops\.yaml"):
        load_secret_bundle(REPO, [])


def test_an_incomplete_bundle_is_refused(tmp_path: Path) -> None:
    from dapper.backends.talosgen.secrets import parse_bundle

    doc = bundle_document()
    del doc["trustdinfo"]
    with pytest.raises(TalConfigError, match=r"talsecret\.sops\.yaml: .* no trustdinfo\.token"):
        parse_bundle(doc, tmp_path / "talsecret.sops.yaml")


@pytest.mark.parametrize(
    ("old", "new", "needle", "reason"),
    [
        (
            "talosVersion: ${TALOS_VERSION}",
            "talosVersion: ${TALOS_VERSON}",
            "talosVersion:",
            "${TALOS_VERSON} is not set in talenv.yaml",
        ),
        (
            "    # Adds nonfree-kmod",
            "    nodeLabels: {a: b}\n    # Adds nonfree-kmod",
            "nodeLabels:",
            "node talos-node-gpu-1: nodeLabels is not supported by dapper-tui talos genconfig",
        ),
        (
            "    ipAddress: 10.100.0.55\n",
            "    ipAddress: 10.100.0.555\n",
            "10.100.0.555",
            "node talos-node-large-2: '10.100.0.555' is not an IP address",
        ),
    ],
)
def test_broken_talconfig_is_refused_with_file_and_line(
    tmp_path: Path, old: str, new: str, needle: str, reason: str
) -> None:
    root = copy_repo(tmp_path)
    path = root / "kubernetes/bootstrap/talos/talconfig.yaml"
    text = path.read_text()
    assert old in text
    text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(TalConfigError) as caught:
        load_talconfig(root)
    assert str(caught.value).startswith(f"{path}:{_line_of(text, needle)}: {reason}")


def test_a_missing_patch_file_is_named(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    (root / "kubernetes/bootstrap/talos/patches/gpu/nvidia-gpu.yaml").unlink()
    with pytest.raises(TalConfigError, match=r"patches/gpu/nvidia-gpu\.yaml: No such file"):
        generate_configs(root, identities(), nodes=["talos-node-gpu-1"])
    # the other nodes do not need that patch
    assert generate_configs(root, identities(), nodes=["talos-node-large-1"]).configs


def test_another_talos_minor_loads_but_is_not_generated(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    env = root / "kubernetes/bootstrap/talos/talenv.yaml"
    env.write_text(env.read_text().replace("TALOS_VERSION: v1.11.2", "TALOS_VERSION: v1.12.0"))
    tc = load_talconfig(root)
    assert tc.talos_version == "v1.12.0"
    assert tc.node("talos-control-1").image.endswith(":v1.12.0")  # type: ignore[union-attr]
    text = tc.path.read_text()
    with pytest.raises(TalConfigError) as caught:
        generate_configs(root, identities())
    assert str(caught.value) == (
        f"{tc.path}:{_line_of(text, 'talosVersion:')}: talosVersion v1.12.0: "
        "the generator models Talos v1.11.x only (use talhelper)"
    )
