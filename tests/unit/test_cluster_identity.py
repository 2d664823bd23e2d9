"""The lab takes its cluster identity from the tree's talsecret bundle when its key opens
it, and keeps one of its own otherwise (no bundle, another key, a broken bundle)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cryptography import x509
from dapper.lab.cluster_identity import TALSECRET, from_repo
from dapper.lab.pki import CertificateAuthority
from dapper.lab.runtime import LAB_KEY, find_repo
from pyrage import x25519

TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")


def _repo_with_bundle(tmp_path: Path) -> Path:
    checkout = find_repo()
    assert checkout is not None
    (tmp_path / TALSECRET).parent.mkdir(parents=True)
    shutil.copy(checkout / TALSECRET, tmp_path / TALSECRET)
    return tmp_path


def test_the_lab_key_opens_the_tree_bundle(tmp_path: Path) -> None:
    identity = from_repo(_repo_with_bundle(tmp_path), LAB_KEY.read_text())
    assert identity is not None
    assert TOKEN.fullmatch(identity.machine_token) and TOKEN.fullmatch(identity.cluster_token)
    assert identity.machine_token != identity.cluster_token  # trustd's and kubeadm's
    ca = CertificateAuthority.from_pem(identity.os_ca_cert_pem, identity.os_ca_key_pem)
    assert ca.ed25519
    client = ca.issue("os:admin", orgs=["os:admin"], client=True)
    root = x509.load_pem_x509_certificate(identity.os_ca_cert_pem)
    x509.load_pem_x509_certificate(client.cert_pem).verify_directly_issued_by(root)


def test_without_an_opening_bundle_there_is_no_identity(tmp_path: Path) -> None:
    assert from_repo(None, LAB_KEY.read_text()) is None
    assert from_repo(tmp_path, LAB_KEY.read_text()) is None  # no bundle
    repo = _repo_with_bundle(tmp_path)
    assert from_repo(repo, str(x25519.Identity.generate()) + "\n") is None  # another key
    (repo / TALSECRET).write_text("cluster: {}\n")  # not a SOPS file
    assert from_repo(repo, LAB_KEY.read_text()) is None
