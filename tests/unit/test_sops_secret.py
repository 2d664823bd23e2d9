"""Secret helpers: key names without a key, value rotation, rekeying, atomic ciphertext writes."""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dapper.backends.sops import file as sops
from dapper.backends.sops.errors import NoMatchingRuleError, SopsError
from dapper.backends.sops.secret import encrypted_keys, rewrite_values, value_fingerprint
from pyrage import x25519
from ruamel.yaml import YAML

SOPS_BIN = Path(sys.executable).parent / "sops"
REL = "kubernetes/apps/network/external-dns/secret.sops.yaml"

SECRET = """\
---
# Cloudflare token for external-dns.
apiVersion: v1
kind: Secret
metadata:
  name: external-dns-secret
stringData:
  api-token: old-token
data:
  ca.crt: b2xkLWNh
"""


@pytest.fixture
def identity() -> Any:
    return x25519.Identity.generate()


@pytest.fixture
def repo(tmp_path: Path, identity: Any) -> Path:
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n"
        "  - path_regex: kubernetes/.*\\.sops\\.ya?ml\n"
        "    encrypted_regex: ^(data|stringData)$\n"
        "    mac_only_encrypted: true\n"
        f"    key_groups:\n      - age:\n          - {identity.to_public()}\n"
        "stores:\n  yaml:\n    indent: 2\n"
    )
    path = tmp_path / REL
    path.parent.mkdir(parents=True)
    rule = sops.find_creation_rule(tmp_path, REL)
    sops.write_encrypted(path, sops.encrypt_documents(list(YAML().load_all(SECRET)), rule))
    return tmp_path


def enc_values(text: str) -> list[str]:
    return re.findall(r"ENC\[AES256_GCM,[^\]]*\]", text)


def test_key_names_are_listed_without_any_key(repo: Path) -> None:
    assert encrypted_keys(repo / REL) == ["api-token", "ca.crt"]
    assert sops.is_sops_file((repo / REL).read_text())


def test_rewrite_values_replaces_and_rekeys(repo: Path, identity: Any) -> None:
    before = (repo / REL).read_text()
    text = rewrite_values(
        repo / REL, {"api-token": "new-token", "ca.crt": "new-ca"}, [identity], repo
    )
    assert "new-token" not in text and (repo / REL).read_text() == before  # nothing written
    doc = sops.decrypt_text(text, [identity])
    secret = doc.documents[0]
    assert secret["stringData"]["api-token"] == "new-token"
    assert base64.b64decode(secret["data"]["ca.crt"]) == b"new-ca"
    assert secret["metadata"]["name"] == "external-dns-secret"
    # A fresh data key: the wrapped key and every IV differ from the old file.
    old_enc = re.search(r"enc: \|\n((?:\s+.*\n)+?)\s+-----END", before)
    assert old_enc and old_enc.group(1) not in text
    assert not set(enc_values(before)) & set(enc_values(text))
    assert text.startswith("---\n# Cloudflare token") or text.startswith("# Cloudflare token")


def test_rewrite_unknown_key(repo: Path, identity: Any) -> None:
    with pytest.raises(SopsError) as exc:
        rewrite_values(repo / REL, {"nope": "x"}, [identity], repo)
    assert "nope" in str(exc.value)
    text = rewrite_values(repo / REL, {"nope": "x"}, [identity], repo, add_missing=True)
    assert sops.decrypt_text(text, [identity]).documents[0]["stringData"]["nope"] == "x"


def test_rewrite_outside_rules(repo: Path, identity: Any) -> None:
    outside = repo / "docs" / "secret.yaml"
    outside.parent.mkdir()
    outside.write_text((repo / REL).read_text())
    with pytest.raises(NoMatchingRuleError):
        rewrite_values(outside, {"api-token": "x"}, [identity], repo / ".sops.yaml")


def test_rewritten_file_decrypts_with_sops(repo: Path, identity: Any) -> None:
    sops.write_encrypted(
        repo / REL, rewrite_values(repo / REL, {"api-token": "rotated"}, [identity], repo)
    )
    key = repo / "age.key"
    key.write_text(f"{identity}\n")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(repo), "SOPS_AGE_KEY_FILE": str(key)}
    out = subprocess.run(
        [str(SOPS_BIN), "--decrypt", REL],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert YAML().load(out)["stringData"]["api-token"] == "rotated"


def test_reencrypt_to_a_new_recipient(repo: Path, identity: Any) -> None:
    new = x25519.Identity.generate()
    rule = sops.CreationRule(
        age=(str(new.to_public()),),
        selector=sops.ValueSelector(encrypted_regex="^(data|stringData)$", mac_only_encrypted=True),
    )
    text = sops.reencrypt(repo / REL, [identity], rule)
    assert sops.decrypt_text(text, [new]).documents[0]["stringData"]["api-token"] == "old-token"
    with pytest.raises(sops.WrongKeyError):
        sops.decrypt_text(text, [identity])
    same = sops.reencrypt(repo / REL, [identity])  # no rule: same recipients and selector
    doc = sops.decrypt_text(same, [identity])
    assert doc.metadata.selector.encrypted_regex == "^(data|stringData)$"
    assert "\n  name: external-dns-secret" in same  # indentation of the file is kept


def test_write_encrypted_is_atomic_and_refuses_plaintext(repo: Path) -> None:
    path = repo / REL
    path.chmod(0o600)
    text = path.read_text()
    with pytest.raises(SopsError):
        sops.write_encrypted(path, SECRET)
    assert path.read_text() == text
    sops.write_encrypted(path, text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.sops.yaml"]


def test_value_fingerprint() -> None:
    assert value_fingerprint("hunter2") == value_fingerprint(b"hunter2")
    assert value_fingerprint("hunter2") != value_fingerprint("hunter3")
    assert "hunter2" not in value_fingerprint("hunter2")
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", value_fingerprint(""))


def test_is_sops_file_shapes(repo: Path) -> None:
    text = (repo / REL).read_text()
    docs = list(YAML().load_all(text))
    assert sops.is_sops_file(docs) and sops.is_sops_file(docs[0])
    assert not sops.is_sops_file(SECRET) and not sops.is_sops_file("::: not yaml [")
    assert not sops.is_sops_file([]) and not sops.is_sops_file({"sops": "x"})
