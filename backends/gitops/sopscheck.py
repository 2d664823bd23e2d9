"""Structural checks of SOPS files against `.sops.yaml`, without decrypting anything.

`check` must run where no age key exists (CI, a reviewer's laptop), so it verifies what
can be seen from outside: the file matches a creation rule, carries sops metadata
(mac, lastmodified, version, age recipients of that rule), and exactly the fields the
rule names hold well-formed `ENC[AES256_GCM,...]` values.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:(?P<iv>[A-Za-z0-9+/=]+),"
    r"tag:(?P<tag>[A-Za-z0-9+/=]+),type:(?P<type>str|int|float|bool|bytes|comment)\]$"
)


@dataclass
class CreationRule:
    path_regex: str
    age: list[str] = field(default_factory=list)
    encrypted_regex: str | None = None
    unencrypted_regex: str | None = None
    encrypted_suffix: str | None = None
    unencrypted_suffix: str | None = None
    mac_only_encrypted: bool = False
    index: int = 0


class SopsConfigError(Exception):
    pass


def parse_rules(config: Any) -> list[CreationRule]:
    """Creation rules of a parsed `.sops.yaml`."""
    if not isinstance(config, dict) or not isinstance(config.get("creation_rules"), list):
        raise SopsConfigError(".sops.yaml has no creation_rules list")
    rules = []
    for n, raw in enumerate(config["creation_rules"]):
        if not isinstance(raw, dict):
            raise SopsConfigError(f"creation rule {n + 1} is not a mapping")
        age: list[str] = []
        if raw.get("age"):
            age += [a.strip() for a in str(raw["age"]).split(",") if a.strip()]
        for group in raw.get("key_groups") or []:
            age += [str(a).strip() for a in (group or {}).get("age") or []]
        rules.append(
            CreationRule(
                path_regex=str(raw.get("path_regex") or ""),
                age=age,
                encrypted_regex=raw.get("encrypted_regex"),
                unencrypted_regex=raw.get("unencrypted_regex"),
                encrypted_suffix=raw.get("encrypted_suffix"),
                unencrypted_suffix=raw.get("unencrypted_suffix"),
                mac_only_encrypted=bool(raw.get("mac_only_encrypted", False)),
                index=n + 1,
            )
        )
    return rules


def match_rule(rules: list[CreationRule], path: str) -> CreationRule | None:
    """The first rule whose path_regex matches the repo-relative path, as sops picks it."""
    for rule in rules:
        try:
            if re.search(rule.path_regex, path):
                return rule
        except re.error:
            continue
    return None


def enc_problem(value: Any) -> str | None:
    """Why a value is not a well-formed sops ciphertext, or None."""
    if not isinstance(value, str):
        return f"{type(value).__name__} value is not encrypted"
    m = ENC_RE.match(value)
    if not m:
        return (
            "value is not an ENC[AES256_GCM,...] ciphertext"
            if not value.startswith("ENC[")
            else "malformed ENC[...] value"
        )
    try:
        iv = base64.b64decode(m.group("iv"), validate=True)
        tag = base64.b64decode(m.group("tag"), validate=True)
        base64.b64decode(m.group("data"), validate=True)
    except (binascii.Error, ValueError):
        return "ENC[...] value has bad base64"
    if len(iv) != 32 or len(tag) != 16:
        return "ENC[...] value has a wrong iv or tag length"
    return None


def _encrypted_key(rule_meta: dict[str, Any], key: str) -> bool | None:
    """True/False when a key decides encryption of its subtree, None when it does not."""
    if rule_meta.get("encrypted_regex"):
        return True if re.search(rule_meta["encrypted_regex"], key) else None
    if rule_meta.get("unencrypted_regex"):
        return False if re.search(rule_meta["unencrypted_regex"], key) else None
    if rule_meta.get("encrypted_suffix"):
        return True if key.endswith(rule_meta["encrypted_suffix"]) else None
    suffix = rule_meta.get("unencrypted_suffix") or "_unencrypted"
    return False if key.endswith(suffix) else None


def _default_encrypted(rule_meta: dict[str, Any]) -> bool:
    return not (rule_meta.get("encrypted_regex") or rule_meta.get("encrypted_suffix"))


def leaf_problems(doc: dict[str, Any], rule_meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, reason) for leaves whose encryption does not match the rule."""
    out: list[tuple[str, str]] = []

    def visit(node: Any, path: str, enc: bool) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                decided = _encrypted_key(rule_meta, str(k))
                visit(v, f"{path}.{k}" if path else str(k), enc if decided is None else decided)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]", enc)
        elif enc:
            why = enc_problem(node)
            if why:
                out.append((path, why))
        elif isinstance(node, str) and node.startswith("ENC["):
            out.append((path, "encrypted although the creation rule leaves it in plaintext"))

    for k, v in doc.items():
        if k == "sops":
            continue
        decided = _encrypted_key(rule_meta, str(k))
        visit(v, str(k), _default_encrypted(rule_meta) if decided is None else decided)
    return out


def structure_problems(doc: Any, rule: CreationRule) -> list[tuple[str, str]]:
    """(field path or "", reason) for one document of a sops file."""
    if not isinstance(doc, dict):
        return [("", "not a mapping")]
    meta = doc.get("sops")
    if not isinstance(meta, dict):
        return [("", "not encrypted: no sops metadata (run sops --encrypt --in-place)")]
    out: list[tuple[str, str]] = []
    for key in ("mac", "lastmodified", "version"):
        if not meta.get(key):
            out.append((f"sops.{key}", "missing from sops metadata"))
    if meta.get("mac") and enc_problem(str(meta["mac"])):
        out.append(("sops.mac", "malformed mac"))
    recipients = []
    for entry in meta.get("age") or []:
        if not isinstance(entry, dict) or not entry.get("recipient"):
            out.append(("sops.age", "age entry without recipient"))
            continue
        if "BEGIN AGE ENCRYPTED FILE" not in str(entry.get("enc", "")):
            out.append(("sops.age", f"no encrypted data key for {entry['recipient']}"))
        recipients.append(str(entry["recipient"]))
    if not recipients and not any(meta.get(k) for k in ("pgp", "kms", "gcp_kms", "azure_kv")):
        out.append(("sops", "no recipients in sops metadata"))
    if rule.age and sorted(set(recipients)) != sorted(set(rule.age)):
        out.append(
            (
                "sops.age",
                f"encrypted to {', '.join(sorted(recipients)) or 'nobody'} but creation rule "
                f"{rule.index} wants {', '.join(sorted(rule.age))} (run sops updatekeys)",
            )
        )
    for key in ("encrypted_regex", "unencrypted_regex", "encrypted_suffix"):
        want = getattr(rule, key)
        if (meta.get(key) or None) != (want or None):
            out.append(
                (
                    "sops." + key,
                    f"is {meta.get(key)!r} but creation rule {rule.index} says {want!r}",
                )
            )
    if bool(meta.get("mac_only_encrypted", False)) != rule.mac_only_encrypted:
        out.append(("sops.mac_only_encrypted", f"differs from creation rule {rule.index}"))
    out.extend(leaf_problems(doc, meta))
    return out
