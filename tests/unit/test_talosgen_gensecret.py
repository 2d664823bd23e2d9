"""A new Talos secret bundle: complete, the right key types, encrypted on disk, usable."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from dapper.backends.sops.file import encrypt_documents, write_encrypted
from dapper.backends.sops.rules import find_creation_rule
from dapper.backends.talosgen.generate import generate_configs
from dapper.backends.talosgen.gensecret import new_secret_bundle
from dapper.backends.talosgen.secrets import load_secret_bundle, parse_bundle

from tests.unit.talosgen_support import REPO, copy_repo, identities, load_yaml

TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


def _cert(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def test_a_new_bundle_is_complete_with_talos_key_types() -> None:
    doc = new_secret_bundle()
    bundle = parse_bundle(doc, Path("talsecret.yaml"))  # every field the generator needs
    assert TOKEN.match(bundle.bootstrap_token) and TOKEN.match(bundle.trustd_token)
    assert len(base64.b64decode(bundle.secretbox_encryption_secret)) == 32
    etcd, os_ca = _cert(bundle.etcd.crt), _cert(bundle.os.crt)
    assert isinstance(etcd.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(os_ca.public_key(), ed25519.Ed25519PublicKey)
    assert etcd.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "etcd"
    assert os_ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "talos"
    assert etcd.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert base64.b64decode(bundle.k8s_service_account_key).startswith(b"-----BEGIN EC PRIVATE")
    other = new_secret_bundle()
    assert other["cluster"]["secret"] != doc["cluster"]["secret"], "fresh randomness each time"


def test_written_encrypted_then_configs_generate_from_it(tmp_path: Path) -> None:
    root = copy_repo(tmp_path)
    shutil.copy(REPO / ".sops.yaml", root / ".sops.yaml")
    path = root / "kubernetes" / "bootstrap" / "talos" / "talsecret.sops.yaml"
    path.unlink()
    doc = new_secret_bundle()
    rel = "kubernetes/bootstrap/talos/talsecret.sops.yaml"
    write_encrypted(path, encrypt_documents([doc], find_creation_rule(root, rel)))
    text = path.read_text()
    assert doc["cluster"]["secret"] not in text and "PRIVATE KEY" not in text, "ciphertext only"
    assert doc["certs"]["os"]["key"] not in text
    assert load_secret_bundle(root, identities()).cluster_secret == doc["cluster"]["secret"]
    generated = generate_configs(root, identities())
    config = load_yaml(generated.config_for("talos-control-1"))
    assert config["machine"]["ca"]["crt"] == doc["certs"]["os"]["crt"]
    assert (
        config["cluster"]["secretboxEncryptionSecret"]
        == doc["secrets"]["secretboxencryptionsecret"]
    )
