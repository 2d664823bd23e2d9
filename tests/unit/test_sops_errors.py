"""Each failure has its own error class and a one-line message (and sops agrees on MACs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dapper.backends.sops import file as sops
from dapper.backends.sops.errors import (
    MacMismatchError,
    MalformedValueError,
    NoKeyError,
    NoMatchingRuleError,
    NotSopsFileError,
    SopsError,
    UnsupportedError,
    ValueAuthError,
    WrongKeyError,
)
from dapper.backends.sops.rules import CreationRule, ValueSelector
from pyrage import x25519
from ruamel.yaml import YAML

SOPS_BIN = Path(sys.executable).parent / "sops"

SOURCE = """\
name: app
host_unencrypted: db.example.invalid
password: hunter2
tokens:
  - first
  - second
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: app
stringData:
  password: hunter2
"""


@pytest.fixture
def identity() -> Any:
    return x25519.Identity.generate()


def encrypt(identity: Any, source: str = SOURCE, **selector: Any) -> str:
    rule = CreationRule(age=(str(identity.to_public()),), selector=ValueSelector(**selector))
    return sops.encrypt_documents(list(YAML().load_all(source)), rule)


def sops_decrypt_fails(tmp_path: Path, identity: Any, text: str) -> str:
    """Run the real sops on `text`; return its stderr (the test expects it to fail)."""
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    target = tmp_path / "file.yaml"
    target.write_text(text)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    env["SOPS_AGE_KEY_FILE"] = str(key)
    result = subprocess.run(
        [str(SOPS_BIN), "--decrypt", str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    return result.stderr


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    assert "hunter2" not in message and "AGE-SECRET-KEY" not in message
    return message


def test_changed_clear_value_is_a_mac_mismatch(tmp_path: Path, identity: Any) -> None:
    text = encrypt(identity).replace("db.example.invalid", "evil.example.invalid")
    with pytest.raises(MacMismatchError) as exc:
        sops.decrypt_text(text, [identity])
    assert type(exc.value) is MacMismatchError
    assert "MAC mismatch" in one_line(exc)
    assert "MAC mismatch" in sops_decrypt_fails(tmp_path, identity, text)


def test_swapped_list_items_are_a_mac_mismatch(tmp_path: Path, identity: Any) -> None:
    """Items of one list share their AAD, so only the MAC notices a reorder."""
    text = encrypt(identity)
    first, second = re.findall(r"^ *- (ENC\[.*\])$", text, flags=re.M)
    swapped = text.replace(first, "@@").replace(second, first).replace("@@", second)
    with pytest.raises(MacMismatchError):
        sops.decrypt_text(swapped, [identity])
    assert "MAC mismatch" in sops_decrypt_fails(tmp_path, identity, swapped)


def test_tampered_mac_is_a_mac_mismatch(identity: Any) -> None:
    text = encrypt(identity)
    other_mac = re.search(r"mac: (ENC\[.*\])", encrypt(identity)).group(1)  # type: ignore[union-attr]
    tampered = re.sub(r"mac: ENC\[.*\]", f"mac: {other_mac}", text)
    with pytest.raises(MacMismatchError) as exc:
        sops.decrypt_text(tampered, [identity])
    one_line(exc)


def test_changed_lastmodified_is_a_mac_mismatch(identity: Any) -> None:
    text = re.sub(
        r'lastmodified: "[^"]+"', 'lastmodified: "2001-01-01T00:00:00Z"', encrypt(identity)
    )
    with pytest.raises(MacMismatchError):
        sops.decrypt_text(text, [identity])


def test_flipped_ciphertext_fails_authentication(identity: Any) -> None:
    text = encrypt(identity)
    match = re.search(r"password: ENC\[AES256_GCM,data:([^,]+),", text)
    assert match
    data = match.group(1)
    flipped = ("B" if data[0] == "A" else "A") + data[1:]
    with pytest.raises(ValueAuthError) as exc:
        sops.decrypt_text(text.replace(data, flipped), [identity])
    assert "password" in one_line(exc)
    assert isinstance(exc.value, MacMismatchError)


def test_mac_only_encrypted_ignores_clear_values(tmp_path: Path, identity: Any) -> None:
    """With mac_only_encrypted the clear parts are not covered (as in sops)."""
    text = encrypt(identity, SECRET, encrypted_regex="^(data|stringData)$", mac_only_encrypted=True)
    renamed = text.replace("name: app", "name: renamed")
    assert sops.decrypt_text(renamed, [identity]).documents[0]["metadata"]["name"] == "renamed"
    strict = encrypt(identity, SECRET, encrypted_regex="^(data|stringData)$")
    with pytest.raises(MacMismatchError):
        sops.decrypt_text(strict.replace("name: app", "name: renamed"), [identity])


def test_no_identity_at_all(identity: Any, tmp_path: Path, monkeypatch: Any) -> None:
    text = encrypt(identity)
    with pytest.raises(NoKeyError) as exc:
        sops.decrypt_text(text, [])
    assert "SOPS_AGE_KEY_FILE" in one_line(exc)
    for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    with pytest.raises(NoKeyError):
        sops.decrypt_text(text)  # identities=None: the environment, which has none


def test_missing_key_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(NoKeyError) as exc:
        sops.load_identities({"SOPS_AGE_KEY_FILE": str(tmp_path / "absent.txt")})
    assert "absent.txt" in one_line(exc)


def test_wrong_key(identity: Any) -> None:
    text = encrypt(identity)
    with pytest.raises(WrongKeyError) as exc:
        sops.decrypt_text(text, [x25519.Identity.generate(), x25519.Identity.generate()])
    message = one_line(exc)
    assert str(identity.to_public()) in message and "2 age identities" in message


def test_file_outside_the_rules(tmp_path: Path) -> None:
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: kubernetes/.*\\.sops\\.yaml$\n"
        f"    age: {x25519.Identity.generate().to_public()}\n"
    )
    with pytest.raises(NoMatchingRuleError) as exc:
        sops.find_creation_rule(tmp_path, "docs/notes.sops.yaml")
    assert "docs/notes.sops.yaml" in one_line(exc)


def test_plain_yaml_is_not_a_sops_file(identity: Any) -> None:
    with pytest.raises(NotSopsFileError) as exc:
        sops.decrypt_text(SOURCE, [identity], source="app.yaml")
    assert "app.yaml" in one_line(exc)
    with pytest.raises(NotSopsFileError):
        sops.decrypt_text("a: [unclosed\n", [identity])
    broken_meta = re.sub(r"\n *mac: .*", "", encrypt(identity))
    with pytest.raises(NotSopsFileError):
        sops.decrypt_text(broken_meta, [identity])


def test_malformed_enc_value(identity: Any) -> None:
    text = encrypt(identity)
    garbled = re.sub(r"password: ENC\[[^\]]*\]", "password: ENC[AES256_GCM,data:xyz]", text)
    with pytest.raises(MalformedValueError) as exc:
        sops.decrypt_text(garbled, [identity])
    assert "password" in one_line(exc)
    cleartext = re.sub(r"password: ENC\[[^\]]*\]", "password: hunter2", text)
    with pytest.raises(MalformedValueError):
        sops.decrypt_text(cleartext, [identity])


def test_aliases_and_non_string_keys_are_refused(identity: Any) -> None:
    rule = CreationRule(age=(str(identity.to_public()),))
    with pytest.raises(UnsupportedError):
        sops.encrypt_documents([YAML().load("a: &x {b: 1}\nc: *x\n")], rule)
    with pytest.raises(UnsupportedError):
        sops.encrypt_documents([YAML().load("1: one\n")], rule)
    with pytest.raises(SopsError):
        sops.encrypt_documents([YAML().load(encrypt(identity))], rule)  # already encrypted
