"""Kubernetes Secrets in SOPS files: key names without decrypting, value rotation, fingerprints.

In a Secret encrypted with `encrypted_regex: ^(data|stringData)$` only the values are
ciphertext, so the key names can be listed (console, `dapper-tui check`) with no key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from dapper.backends.sops.errors import SopsError
from dapper.backends.sops.file import decrypt_file, encrypt_documents, load_yaml_documents
from dapper.backends.sops.keys import IdentityLike
from dapper.backends.sops.rules import find_creation_rule
from ruamel.yaml.comments import CommentedMap

SECRET_FIELDS = ("data", "stringData")


def _is_secret(doc: Any) -> bool:
    return isinstance(doc, Mapping) and doc.get("kind") == "Secret"


def secret_key_names(text: str, source: str = "<text>") -> list[str]:
    """data/stringData key names of every Secret in a YAML text (encrypted or not), in order."""
    names: list[str] = []
    for doc in load_yaml_documents(text, source):
        if not _is_secret(doc):
            continue
        for field, section in doc.items():  # file order
            if field in SECRET_FIELDS and isinstance(section, Mapping):
                names += [str(k) for k in section if str(k) not in names]
    return names


def encrypted_keys(path: str | os.PathLike[str]) -> list[str]:
    """The Secret key names in a SOPS file, read without decrypting anything."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SopsError(f"{path}: {exc.strerror or exc}") from None
    return secret_key_names(text, str(path))


def value_fingerprint(value: str | bytes) -> str:
    """A short, stable digest to tell whether two secret values are equal without showing them.

    Shown to operators only; a truncated SHA-256 does not reveal a high-entropy secret,
    but never publish fingerprints of guessable values (short passwords).
    """
    raw = value.encode() if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:12]


def _set_value(doc: CommentedMap, key: str, value: str | bytes, add: bool) -> bool:
    string_data = doc.get("stringData")
    data = doc.get("data")
    if isinstance(string_data, MutableMapping) and key in string_data:
        string_data[key] = value.decode() if isinstance(value, bytes) else value
        return True
    if isinstance(data, MutableMapping) and key in data:
        raw = value.encode() if isinstance(value, str) else value
        data[key] = base64.b64encode(raw).decode()
        return True
    if not add:
        return False
    if not isinstance(string_data, Mapping):
        doc["stringData"] = string_data = CommentedMap()
    string_data[key] = value.decode() if isinstance(value, bytes) else value
    return True


def rewrite_values(
    path: str | os.PathLike[str],
    updates: Mapping[str, str | bytes],
    identities: Iterable[IdentityLike] | None,
    sops_config: str | os.PathLike[str],
    *,
    add_missing: bool = False,
) -> str:
    """New ciphertext for a Secret file with some values replaced (nothing is written).

    Each key is replaced wherever it appears in a Secret: stringData values as given,
    data values base64-encoded. An unknown key is an error unless `add_missing`, which
    puts it in the first Secret's stringData. The result is encrypted with a fresh data
    key to the recipients of the `.sops.yaml` rule (`sops_config`: file or its dir)
    that matches `path`; write it with `sops.write_encrypted`.
    """
    doc = decrypt_file(path, identities)
    secrets = [d for d in doc.documents if _is_secret(d)]
    if not secrets:
        raise SopsError(f"{path}: no Kubernetes Secret in this file")
    for key, value in updates.items():
        found = [_set_value(s, key, value, add=False) for s in secrets]
        if not any(found) and not _set_value(secrets[0], key, value, add=add_missing):
            raise SopsError(f"{path}: the Secret has no key {key!r}")
    rule = find_creation_rule(sops_config, os.path.abspath(path))
    return encrypt_documents(doc.documents, rule)
