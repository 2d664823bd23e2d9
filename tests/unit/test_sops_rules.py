""".sops.yaml creation rules, value selectors and where age identities come from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dapper.backends.sops import file as sops
from dapper.backends.sops.errors import NoKeyError, SopsConfigError, UnsupportedError
from dapper.backends.sops.rules import ValueSelector
from pyrage import x25519

R1 = str(x25519.Identity.generate().to_public())
R2 = str(x25519.Identity.generate().to_public())

CONFIG = f"""\
---
# rule order matters
creation_rules:
  - # talos first
    path_regex: talos/.*\\.sops\\.ya?ml
    mac_only_encrypted: true
    key_groups:
      - age:
          - {R1}
  - path_regex: kubernetes/.*\\.sops\\.ya?ml
    encrypted_regex: ^(data|stringData)$
    age: " {R1} ,{R2}"
  - path_regex: \\.enc\\.yaml$
    encrypted_suffix: _secret
    age: [{R2}]
  - age: {R1}
stores:
  yaml:
    indent: 2
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".sops.yaml").write_text(CONFIG)
    return tmp_path


def test_first_matching_rule_wins(repo: Path) -> None:
    rule = sops.find_creation_rule(repo, "kubernetes/bootstrap/talos/talsecret.sops.yaml")
    assert rule.index == 0  # "talos/" is found anywhere in the path, like sops (unanchored)
    assert rule.selector.mac_only_encrypted and rule.selector.unencrypted_suffix == "_unencrypted"
    assert rule.age == (R1,) and rule.indent == 2
    rule = sops.find_creation_rule(repo / ".sops.yaml", "kubernetes/apps/x/secret.sops.yaml")
    assert rule.index == 1 and rule.age == (R1, R2)
    assert rule.selector == ValueSelector(encrypted_regex="^(data|stringData)$")
    assert sops.find_creation_rule(repo, "docs/a.enc.yaml").age == (R2,)
    assert sops.find_creation_rule(repo, "README.md").index == 3  # catch-all


def test_path_is_relative_to_the_config_dir(repo: Path) -> None:
    absolute = repo / "kubernetes" / "a.sops.yaml"
    assert sops.find_creation_rule(repo, absolute).index == 1
    config = sops.load_sops_config(repo)
    assert config.relative_path(absolute) == "kubernetes/a.sops.yaml"
    assert config.relative_path("/elsewhere/kubernetes/a.sops.yaml").startswith("/elsewhere")


def test_config_is_found_in_parents(repo: Path) -> None:
    deep = repo / "kubernetes" / "apps" / "x"
    deep.mkdir(parents=True)
    assert sops.find_sops_config(deep / "secret.sops.yaml") == repo / ".sops.yaml"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("metadata", "name"), False),
        (("data",), True),
        (("stringData", "token"), True),
        (("spec", "data"), True),  # any key of the path counts, like sops
        (("datax",), False),
    ],
)
def test_encrypted_regex_selector(path: tuple[str, ...], expected: bool) -> None:
    assert ValueSelector(encrypted_regex="^(data|stringData)$").should_encrypt(path) is expected


def test_suffix_selectors() -> None:
    default = ValueSelector().normalized()
    assert default.unencrypted_suffix == "_unencrypted"
    assert default.should_encrypt(("a", "b")) and not default.should_encrypt(("a_unencrypted", "b"))
    enc = ValueSelector(encrypted_suffix="_secret")
    assert enc.should_encrypt(("db_secret", "pw")) and not enc.should_encrypt(("db", "pw"))
    unre = ValueSelector(unencrypted_regex="^pub")
    assert not unre.should_encrypt(("public",)) and unre.should_encrypt(("private",))


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("encrypted_regex: a\n    unencrypted_suffix: _x\n    age: {r}", SopsConfigError),
        ("pgp: FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4\n    age: {r}", UnsupportedError),
        ("key_groups:\n      - age: [{r}]\n      - age: [{r}]", UnsupportedError),
        ("encrypted_comment_regex: sops\n    age: {r}", UnsupportedError),
        ("path_regex: x", SopsConfigError),
        ("path_regex: '(unclosed'\n    age: {r}", SopsConfigError),
    ],
)
def test_unusable_rules_are_refused(tmp_path: Path, rule: str, error: type) -> None:
    (tmp_path / ".sops.yaml").write_text(f"creation_rules:\n  - {rule.format(r=R1)}\n")
    with pytest.raises(error) as exc:
        sops.load_sops_config(tmp_path)
    assert "\n" not in str(exc.value)


def test_unreadable_or_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(SopsConfigError):
        sops.load_sops_config(tmp_path / "missing.yaml")
    (tmp_path / ".sops.yaml").write_text("creation_rules: [\n")
    with pytest.raises(SopsConfigError):
        sops.load_sops_config(tmp_path)


def write_key(path: Path, identity: Any, comment: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# created: today\n# public key: {identity.to_public()}\n{comment}{identity}\n"
    )
    return path


def public_keys(identities: list[Any]) -> list[str]:
    return [str(i.to_public()) for i in identities]


def test_identities_from_all_three_sources(tmp_path: Path) -> None:
    a, b, c, d = (x25519.Identity.generate() for _ in range(4))
    env = {
        "SOPS_AGE_KEY": f"{a}\n# comment\n{b}\n",
        "SOPS_AGE_KEY_FILE": str(write_key(tmp_path / "file.txt", c)),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    write_key(tmp_path / "xdg" / "sops" / "age" / "keys.txt", d)
    assert public_keys(sops.load_identities(env)) == public_keys([a, b, c, d])


def test_xdg_default_falls_back_to_home(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    write_key(tmp_path / ".config" / "sops" / "age" / "keys.txt", identity)
    assert public_keys(sops.load_identities({"HOME": str(tmp_path)})) == public_keys([identity])
    assert sops.load_identities({"HOME": str(tmp_path / "nobody")}) == []


def test_invalid_key_line_never_echoes_the_key(tmp_path: Path) -> None:
    bad = "AGE-SECRET-KEY-1NOTAVALIDKEYATALL"
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{bad}\n")
    with pytest.raises(NoKeyError) as exc:
        sops.load_identities({"SOPS_AGE_KEY_FILE": str(key_file)})
    assert "line 1" in str(exc.value) and bad not in str(exc.value)
