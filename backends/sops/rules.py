"""`.sops.yaml` creation rules and the rule that decides which values get encrypted.

Matching follows sops: rules are tried in order, the first whose `path_regex` is found
(unanchored search, as Go's `regexp.Match`) in the file path relative to the directory
holding `.sops.yaml` wins; a rule without `path_regex` matches every file.
Only age recipients with a single key group are supported (the Dapper tree's setup);
rules naming PGP/KMS/Vault keys or several key groups are refused with a clear error
rather than silently dropping recipients.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dapper.backends.sops.errors import NoMatchingRuleError, SopsConfigError, UnsupportedError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

CONFIG_NAME = ".sops.yaml"
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
DEFAULT_INDENT = 4
SELECTOR_KEYS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
)
_UNSUPPORTED_KEY_TYPES = (
    "pgp",
    "kms",
    "gcp_kms",
    "hckms",
    "azure_keyvault",
    "azure_kv",
    "hc_vault_transit_uri",
    "hc_vault",
)


@dataclass(frozen=True)
class ValueSelector:
    """Which leaves are encrypted (`shouldBeEncrypted`), plus `mac_only_encrypted`.

    At most one of the selector fields is set; with none set sops uses
    `unencrypted_suffix: _unencrypted`, which `normalized()` makes explicit.
    """

    unencrypted_suffix: str = ""
    encrypted_suffix: str = ""
    unencrypted_regex: str = ""
    encrypted_regex: str = ""
    mac_only_encrypted: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> ValueSelector:
        present = [k for k in SELECTOR_KEYS if data.get(k)]
        if len(present) > 1:
            raise SopsConfigError(f"{where}: only one of {', '.join(present)} may be set")
        if present and present[0].endswith("comment_regex"):
            raise UnsupportedError(f"{where}: {present[0]} is not supported")
        values = {k: str(data[k]) for k in present}
        for key in ("unencrypted_regex", "encrypted_regex"):
            if key in values:
                try:
                    re.compile(values[key])
                except re.error as exc:
                    raise SopsConfigError(f"{where}: {key} is not a valid regex: {exc}") from None
        mac_only = data.get("mac_only_encrypted", False)
        if not isinstance(mac_only, bool):
            raise SopsConfigError(f"{where}: mac_only_encrypted must be true or false")
        return cls(**values, mac_only_encrypted=mac_only).normalized()

    def normalized(self) -> ValueSelector:
        if self.unencrypted_suffix or self.encrypted_suffix:
            return self
        if self.unencrypted_regex or self.encrypted_regex:
            return self
        return ValueSelector(
            unencrypted_suffix=DEFAULT_UNENCRYPTED_SUFFIX,
            mac_only_encrypted=self.mac_only_encrypted,
        )

    def should_encrypt(self, path: Sequence[str]) -> bool:
        """sops' shouldBeEncrypted: ancestor keys count, so subtrees follow their key."""
        encrypted = True
        if self.unencrypted_suffix and any(k.endswith(self.unencrypted_suffix) for k in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(k.endswith(self.encrypted_suffix) for k in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, k) for k in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(re.search(self.encrypted_regex, k) for k in path)
        return encrypted

    def metadata_items(self) -> list[tuple[str, str]]:
        """The one selector as it appears in the `sops:` block."""
        return [(k, getattr(self, k)) for k in SELECTOR_KEYS[:4] if getattr(self, k)]


@dataclass(frozen=True)
class CreationRule:
    """One usable `.sops.yaml` creation rule: age recipients + value selector + indent."""

    age: tuple[str, ...]
    selector: ValueSelector = field(default_factory=lambda: ValueSelector().normalized())
    path_regex: str = ""
    index: int = -1  # position in creation_rules, -1 for a rule made in code
    indent: int = DEFAULT_INDENT  # stores.yaml.indent of the config
    config_path: Path | None = None

    def describe(self) -> str:
        origin = f"{self.config_path} rule #{self.index + 1}" if self.config_path else "rule"
        return f"{origin} (path_regex {self.path_regex or '<any>'})"


@dataclass(frozen=True)
class SopsConfig:
    path: Path
    rules: tuple[CreationRule, ...]
    indent: int = DEFAULT_INDENT

    @property
    def root(self) -> Path:
        return self.path.parent

    def relative_path(self, file_path: str | os.PathLike[str]) -> str:
        """The path matched by path_regex: relative to the config's dir when inside it.

        A relative `file_path` is taken relative to the config's directory (the repo root).
        """
        p = Path(file_path)
        absolute = Path(os.path.abspath(p if p.is_absolute() else self.root / p))
        root = Path(os.path.abspath(self.root))
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            return absolute.as_posix()

    def rule_for(self, file_path: str | os.PathLike[str]) -> CreationRule:
        rel = self.relative_path(file_path)
        for rule in self.rules:
            if not rule.path_regex or re.search(rule.path_regex, rel):
                return rule
        raise NoMatchingRuleError(f"{rel}: no creation rule in {self.path} matches this file")


def _age_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        raise SopsConfigError(f"{where}: age must be a string or a list")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise SopsConfigError(f"{where}: age recipients must be strings")
        out += [part.strip() for part in item.split(",") if part.strip()]
    return tuple(out)


def _reject_other_keys(data: Mapping[str, Any], where: str) -> None:
    used = [k for k in _UNSUPPORTED_KEY_TYPES if data.get(k)]
    if used:
        raise UnsupportedError(f"{where}: {', '.join(used)} keys are not supported (age only)")


def _parse_rule(raw: Any, index: int, path: Path, indent: int) -> CreationRule:
    where = f"{path} rule #{index + 1}"
    if not isinstance(raw, Mapping):
        raise SopsConfigError(f"{where}: a creation rule must be a mapping")
    path_regex = str(raw.get("path_regex") or "")
    if path_regex:
        try:
            re.compile(path_regex)
        except re.error as exc:
            raise SopsConfigError(f"{where}: path_regex is not a valid regex: {exc}") from None
    groups = raw.get("key_groups")
    if groups:
        if not isinstance(groups, Sequence) or len(groups) != 1:
            raise UnsupportedError(f"{where}: only one key group is supported (no Shamir)")
        group = groups[0]
        if not isinstance(group, Mapping):
            raise SopsConfigError(f"{where}: a key group must be a mapping")
        _reject_other_keys(group, where)
        age = _age_list(group.get("age"), where)
    else:
        _reject_other_keys(raw, where)
        age = _age_list(raw.get("age"), where)
    if not age:
        raise SopsConfigError(f"{where}: no age recipients")
    return CreationRule(
        age=age,
        selector=ValueSelector.from_mapping(raw, where),
        path_regex=path_regex,
        index=index,
        indent=indent,
        config_path=path,
    )


def load_sops_config(path: str | os.PathLike[str]) -> SopsConfig:
    """Parse a `.sops.yaml` file (or the one in the directory `path`)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        data = YAML(typ="safe").load(path.read_text())
    except OSError as exc:
        raise SopsConfigError(f"{path}: {exc.strerror or exc}") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise SopsConfigError(f"{path}:{line} is not valid YAML") from None
    if not isinstance(data, Mapping):
        raise SopsConfigError(f"{path}: not a mapping")
    indent = DEFAULT_INDENT
    stores = data.get("stores") or {}
    yaml_store = stores.get("yaml") if isinstance(stores, Mapping) else None
    if isinstance(yaml_store, Mapping) and "indent" in yaml_store:
        indent = yaml_store["indent"]
        if not isinstance(indent, int) or isinstance(indent, bool) or not 1 <= indent <= 10:
            raise SopsConfigError(f"{path}: stores.yaml.indent must be an integer 1-10")
    raw_rules = data.get("creation_rules") or []
    if not isinstance(raw_rules, list):
        raise SopsConfigError(f"{path}: creation_rules must be a list")
    rules = tuple(_parse_rule(raw, i, path, indent) for i, raw in enumerate(raw_rules))
    return SopsConfig(path=path, rules=rules, indent=indent)


def find_sops_config(start: str | os.PathLike[str], max_levels: int = 100) -> Path:
    """The nearest `.sops.yaml` in `start` (a file's dir or a dir) or its parents."""
    here = Path(os.path.abspath(start))
    if not here.is_dir():
        here = here.parent
    for _ in range(max_levels):
        candidate = here / CONFIG_NAME
        if candidate.is_file():
            return candidate
        if here.parent == here:
            break
        here = here.parent
    raise SopsConfigError(f"no {CONFIG_NAME} found in {start} or its parents")


def find_creation_rule(
    repo_root_or_sops_yaml: str | os.PathLike[str], file_path: str | os.PathLike[str]
) -> CreationRule:
    """The first rule of the `.sops.yaml` (given, or in the given dir) matching `file_path`.

    Raises NoMatchingRuleError when none matches.
    """
    return load_sops_config(repo_root_or_sops_yaml).rule_for(file_path)
