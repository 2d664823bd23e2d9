"""SOPS-encrypted YAML with age recipients, in pure Python (no `sops` binary at run time).

Files written here decrypt with sops 3.8–3.13 and files sops writes decrypt here
(values: AES-256-GCM with 32-byte IVs and the key path as authenticated data; a SHA-512
MAC over the values; the data key age-encrypted per recipient). Plaintext never touches
disk: decryption returns in-memory documents, encryption takes in-memory documents and
the only file written is ciphertext, atomically (temp file in the same dir + rename).

API (errors are `SopsError` subclasses with one-line messages, see `sops_errors`):

- `load_identities(env=os.environ) -> list` age identities from SOPS_AGE_KEY,
  SOPS_AGE_KEY_FILE and `$XDG_CONFIG_HOME/sops/age/keys.txt` (all of them add up).
- `decrypt_file(path, identities=None) -> SopsDocument`, `decrypt_text(text, identities)`:
  `.documents` (ruamel CommentedMaps, `sops:` removed, YAML 1.2 typing: `yes` stays a
  string; ints, floats, bools, timestamps typed as sops does) and `.metadata`
  (recipients, value selector, lastmodified, version). `identities` may be pyrage
  identities or `AGE-SECRET-KEY-1…` strings; None means `load_identities()`.
- `encrypt_documents(docs, rule, *, indent=None) -> str`: the full ciphertext file text
  with a fresh data key and fresh IVs (comments in encrypted parts are encrypted as
  sops encrypts them, the others kept in clear). `write_encrypted(path, text)` writes it atomically.
- `load_sops_config(path)`, `find_creation_rule(repo_root_or_sops_yaml, file_path)
  -> CreationRule` (first rule whose path_regex matches the path relative to the
  `.sops.yaml` dir), `find_sops_config(start)`.
- `reencrypt(path, identities, rule=None) -> str`: new ciphertext with a fresh data key,
  to `rule`'s recipients (None: the file's own recipients and selector).
- `is_sops_file(text_or_data) -> bool`, `dump_plaintext(docs) -> str` (in memory only).
- Kubernetes Secrets (`sops_secret`): `encrypted_keys(path)` lists data/stringData key
  names without decrypting; `rewrite_values(path, updates, identities, sops_config)`
  returns new ciphertext with the given keys replaced; `value_fingerprint(value)` for
  comparing secret values without showing them.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dapper.backends.sops.crypto import (
    ENC_RE,
    Comment,
    MacBuilder,
    decrypt_value,
    encrypt_value,
    new_data_key,
    parse_go_time,
    value_type,
)
from dapper.backends.sops.errors import (
    MacMismatchError,
    MalformedValueError,
    NoKeyError,
    NoMatchingRuleError,
    NotSopsFileError,
    SopsConfigError,
    SopsError,
    UnsupportedError,
    ValueAuthError,
    WrongKeyError,
)
from dapper.backends.sops.keys import (
    IdentityLike,
    coerce_identities,
    load_identities,
    parse_identities,
    unwrap_data_key,
    wrap_data_key,
)
from dapper.backends.sops.rules import (
    CreationRule,
    SopsConfig,
    ValueSelector,
    find_creation_rule,
    find_sops_config,
    load_sops_config,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

__all__ = [
    "CreationRule",
    "MacMismatchError",
    "MalformedValueError",
    "NoKeyError",
    "NoMatchingRuleError",
    "NotSopsFileError",
    "SopsConfig",
    "SopsConfigError",
    "SopsDocument",
    "SopsError",
    "SopsMetadata",
    "UnsupportedError",
    "ValueAuthError",
    "ValueSelector",
    "WrongKeyError",
    "decrypt_file",
    "decrypt_text",
    "dump_plaintext",
    "encrypt_documents",
    "find_creation_rule",
    "find_sops_config",
    "is_sops_file",
    "load_identities",
    "load_sops_config",
    "parse_identities",
    "reencrypt",
    "write_encrypted",
]

log = logging.getLogger(__name__)

# The metadata layout written is the sops 3.10-3.12 one (no empty lists, struct order).
WRITER_VERSION = "3.10.2"
_OTHER_KEY_TYPES = ("pgp", "kms", "gcp_kms", "hckms", "azure_kv", "hc_vault")
# Strings that YAML 1.1 readers (kubectl's sigs.k8s.io/yaml) would take as bools: quote them.
_YAML11_BOOL = re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")


# --- YAML ---------------------------------------------------------------------------------


class _Representer(RoundTripRepresenter):
    """Round-trip representer that writes `null` and quotes YAML-1.1 bool look-alikes."""

    def represent_none(self, data: Any) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:null", "null")

    def represent_str(self, data: Any) -> Any:
        if type(data) is str and _YAML11_BOOL.match(data):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


_Representer.add_representer(type(None), _Representer.represent_none)
_Representer.add_representer(str, _Representer.represent_str)


def _yaml(indent: int = 4) -> YAML:
    """A round-trip YAML 1.2 instance laid out like go-yaml v3 (sequences indented)."""
    y = YAML()
    y.Representer = _Representer
    y.preserve_quotes = True
    y.width = 1 << 30  # never fold ENC values
    y.indent(mapping=indent, sequence=indent + 2, offset=indent)
    return y


def load_yaml_documents(text: str, source: str) -> list[Any]:
    try:
        return [d for d in _yaml().load_all(text) if d is not None]
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise NotSopsFileError(f"{source}: not valid YAML{line}") from None


def _dump_all(docs: Sequence[Any], indent: int) -> str:
    out = io.StringIO()
    _yaml(indent).dump_all(list(docs), out)
    return out.getvalue()


def dump_plaintext(docs: Sequence[Any], indent: int = 2) -> str:
    """Decrypted documents as YAML text, in memory (for previews; never write it out)."""
    return _dump_all(docs, indent)


# --- metadata -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SopsMetadata:
    """The `sops:` block of a file: who can decrypt it and which values are encrypted."""

    recipients: tuple[str, ...]
    selector: ValueSelector
    lastmodified: str
    version: str
    age_entries: tuple[tuple[str, str], ...]  # (recipient, armored data key)
    mac: str  # the encrypted MAC
    other_key_types: tuple[str, ...] = ()  # e.g. ("pgp",): present but not usable here

    @property
    def mac_only_encrypted(self) -> bool:
        return self.selector.mac_only_encrypted


@dataclass
class SopsDocument:
    """A decrypted file: plaintext documents in memory plus the file's metadata."""

    documents: list[CommentedMap]
    metadata: SopsMetadata
    source: str = "<text>"

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.metadata.recipients

    @property
    def lastmodified(self) -> str:
        return self.metadata.lastmodified


def _age_entries(raw: Any, where: str) -> list[tuple[str, str]]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise NotSopsFileError(f"{where}: sops.age must be a list")
    out = []
    for item in raw:
        if not isinstance(item, Mapping) or not isinstance(item.get("enc"), str):
            raise NotSopsFileError(f"{where}: sops.age entries need recipient and enc")
        out.append((str(item.get("recipient", "")), str(item["enc"])))
    return out


def _parse_metadata(raw: Any, where: str) -> SopsMetadata:
    if not isinstance(raw, Mapping):
        raise NotSopsFileError(f"{where}: the sops key is not a metadata mapping")
    for required in ("mac", "lastmodified"):
        if required not in raw:
            raise NotSopsFileError(f"{where}: sops metadata has no {required}")
    groups = raw.get("key_groups") or []
    if groups and not isinstance(groups, list):
        raise NotSopsFileError(f"{where}: sops.key_groups must be a list")
    if len(groups) > 1:
        raise UnsupportedError(f"{where}: several key groups (Shamir) are not supported")
    sources = [raw, *groups]
    entries = [e for src in sources for e in _age_entries(src.get("age"), where)]
    others = tuple(k for k in _OTHER_KEY_TYPES if any(src.get(k) for src in sources))
    try:
        selector = ValueSelector.from_mapping(raw, f"{where}: sops metadata")
    except SopsConfigError as exc:
        raise NotSopsFileError(str(exc)) from None
    lastmodified = raw["lastmodified"]
    if isinstance(lastmodified, dt.datetime):
        lastmodified = lastmodified.strftime("%Y-%m-%dT%H:%M:%SZ")
    return SopsMetadata(
        recipients=tuple(r for r, _ in entries),
        selector=selector,
        lastmodified=str(lastmodified),
        version=str(raw.get("version", "")),
        age_entries=tuple(entries),
        mac=str(raw["mac"]),
        other_key_types=others,
    )


def _metadata_block(
    age: Sequence[tuple[str, str]], selector: ValueSelector, lastmodified: str, mac: str
) -> CommentedMap:
    block = CommentedMap()
    block["age"] = CommentedSeq(
        CommentedMap([("recipient", r), ("enc", LiteralScalarString(enc))]) for r, enc in age
    )
    block["lastmodified"] = DoubleQuotedScalarString(lastmodified)
    block["mac"] = mac
    for key, value in selector.metadata_items():
        block[key] = value
    if selector.mac_only_encrypted:
        block["mac_only_encrypted"] = True
    block["version"] = WRITER_VERSION
    return block


def _mac_aads(lastmodified: str) -> list[str]:
    """The AAD sops uses for the MAC: Go's RFC 3339 re-formatting of lastmodified."""
    aads = [lastmodified]
    try:
        parsed = parse_go_time(lastmodified).replace(microsecond=0)
    except ValueError:
        return aads
    offset = parsed.utcoffset()
    if not offset:
        aads.append(parsed.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return aads


# --- tree walks -----------------------------------------------------------------------------


def _dotted(path: Sequence[str]) -> str:
    return ".".join(path) or "<root>"


def _check_scalar(value: Any, path: Sequence[str]) -> None:
    try:
        value_type(value)
    except TypeError:
        raise UnsupportedError(
            f"value at {_dotted(path)} has an unsupported YAML type ({type(value).__name__})"
        ) from None


def _walk(node: Any, path: tuple[str, ...], leaf: Any, seen: set[int]) -> Any:
    """Replace each leaf by `leaf(value, path)`; list items that become Comments go away."""
    if isinstance(node, Mapping | list):
        if id(node) in seen:
            raise UnsupportedError(f"YAML aliases are not supported (at {_dotted(path)})")
        seen.add(id(node))
    if isinstance(node, MutableMapping):
        for key in list(node.keys()):
            if not isinstance(key, str):
                raise UnsupportedError(f"non-string key {key!r} under {_dotted(path)}")
            node[key] = _walk(node[key], (*path, key), leaf, seen)
        return node
    if isinstance(node, list):
        drop = []
        for i, item in enumerate(node):
            new = _walk(item, path, leaf, seen)
            if isinstance(new, Comment):
                drop.append(i)
            else:
                node[i] = new
        for i in reversed(drop):
            del node[i]
        return node
    if node is None:
        return None
    return leaf(node, path)


def _containers(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[Any, tuple[str, ...]]]:
    if isinstance(node, CommentedMap):
        yield node, path
        for key, value in node.items():
            yield from _containers(value, (*path, str(key)))
    elif isinstance(node, CommentedSeq):
        yield node, path
        for item in node:
            yield from _containers(item, path)


def _tokens(obj: Any) -> Iterator[Any]:
    """CommentTokens inside a ruamel comment attribute (nested lists of tokens)."""
    if obj is None:
        return
    if isinstance(obj, list):
        for item in obj:
            yield from _tokens(item)
    elif hasattr(obj, "value") and isinstance(obj.value, str):
        yield obj


def _comment_slots(container: Any) -> Iterator[tuple[Any, Any]]:
    """(item key or None, token) for every comment token attached to a container."""
    ca = container.ca
    for token in _tokens(ca.comment):
        yield None, token
    for key, slot in ca.items.items():
        for token in _tokens(slot):
            yield key, token
    for token in _tokens(getattr(ca, "end", None)):
        yield None, token


def _decrypt_comments(docs: Sequence[Any], key: bytes) -> None:
    """Decrypt `#ENC[…]` comment lines in place.

    sops authenticates a comment with the path of the mapping that holds it, but ruamel
    attaches comments to neighbouring nodes, so each candidate path is tried (GCM rejects
    the wrong ones). A comment no path opens is dropped.
    """
    for doc in docs:
        containers = list(_containers(doc))
        all_paths = list(dict.fromkeys(p for _, p in containers))
        for container, path in containers:
            for item_key, token in _comment_slots(container):
                if "#ENC[" not in token.value:
                    continue
                first = [(*path, item_key)] if isinstance(item_key, str) else []
                prefixes = [path[:i] for i in range(len(path), -1, -1)]
                candidates = list(dict.fromkeys([*first, *prefixes, *all_paths]))
                token.value = "".join(
                    _decrypt_comment_line(line, key, candidates)
                    for line in token.value.splitlines(keepends=True)
                )


def _decrypt_comment_line(line: str, key: bytes, candidates: list[tuple[str, ...]]) -> str:
    body = line.lstrip(" ")
    if not body.startswith("#ENC[") or not ENC_RE.match(body[1:]):
        return line
    indent = line[: len(line) - len(body)]
    newline = "\n" if body.endswith("\n") else ""
    enc = body[1:].rstrip("\n")
    for path in candidates:
        aad = ":".join(path) + ":"
        try:
            value = decrypt_value(enc, key, aad)
        except (ValueAuthError, MalformedValueError):
            continue
        text = value.text if isinstance(value, Comment) else str(value)
        return f"{indent}#{text}{newline}"
    log.warning("an encrypted comment could not be decrypted; dropped")
    return newline


def _comment_path(container: Any, path: tuple[str, ...], item_key: Any) -> tuple[str, ...]:
    """The path sops gives a comment: the mapping or list that holds it. ruamel attaches a
    comment written above a nested collection's first entry to the parent's key, so such a
    comment belongs to the child collection, as in sops's tree."""
    nested = isinstance(container, CommentedMap) and isinstance(
        container.get(item_key), CommentedMap | CommentedSeq
    )
    return (*path, item_key) if nested and isinstance(item_key, str) else path


def _encrypt_comments(doc: Any, selector: ValueSelector, key: bytes) -> None:
    """Encrypt, in place, every comment in a part of the tree sops encrypts, as sops does:
    each line becomes `#ENC[…,type:comment]` authenticated with its collection's path
    (comments are not part of the MAC). Comments in clear parts stay as they are."""
    for container, path in _containers(doc):
        for item_key, token in _comment_slots(container):
            where = _comment_path(container, path, item_key)
            if not selector.should_encrypt(where):
                continue
            aad = ":".join(where) + ":"
            token.value = "".join(
                _encrypt_comment_line(line, key, aad)
                for line in token.value.splitlines(keepends=True)
            )


def _encrypt_comment_line(line: str, key: bytes, aad: str) -> str:
    body = line.lstrip(" ")
    if not body.startswith("#") or body.startswith("#ENC["):
        return line  # a blank line, or a comment that is already ciphertext
    indent = line[: len(line) - len(body)]
    newline = "\n" if body.endswith("\n") else ""
    text = body[1:].rstrip("\n")
    return f"{indent}#{encrypt_value(Comment(text), key, aad)}{newline}"


# --- decrypt --------------------------------------------------------------------------------


def decrypt_text(
    text: str, identities: Iterable[IdentityLike] | None = None, *, source: str = "<text>"
) -> SopsDocument:
    """Decrypt a SOPS YAML file's text in memory and verify its MAC."""
    docs = load_yaml_documents(text, source)
    if not docs or not isinstance(docs[0], Mapping) or "sops" not in docs[0]:
        raise NotSopsFileError(f"{source}: not a sops file (no sops metadata)")
    for doc in docs:
        if not isinstance(doc, CommentedMap):
            raise NotSopsFileError(f"{source}: every YAML document must be a mapping")
    meta = _parse_metadata(docs[0]["sops"], source)
    for doc in docs:
        doc.pop("sops", None)
        doc.ca.items.pop("sops", None)
    if not meta.age_entries:
        kinds = ", ".join(meta.other_key_types) or "no"
        raise NoKeyError(f"{source}: the data key has no age recipient ({kinds} keys only)")
    key = unwrap_data_key(meta.age_entries, coerce_identities(identities), source)

    selector = meta.selector
    mac = MacBuilder(selector.mac_only_encrypted)

    def leaf(value: Any, path: tuple[str, ...]) -> Any:
        encrypted = selector.should_encrypt(path)
        if encrypted:
            if not isinstance(value, str):
                raise MalformedValueError(
                    f"{source}: value at {_dotted(path)} should be encrypted but is a "
                    f"{type(value).__name__}"
                )
            try:
                value = decrypt_value(value, key, ":".join(path) + ":", where=_dotted(path))
            except MalformedValueError as exc:
                raise MalformedValueError(f"{source}: {exc}") from None
            except ValueAuthError as exc:
                raise ValueAuthError(f"{source}: {exc}") from None
        else:
            _check_scalar(value, path)
        mac.add(value, encrypted)
        return value

    seen: set[int] = set()
    for doc in docs:
        _walk(doc, (), leaf, seen)
    _verify_mac(meta, key, mac.hexdigest(), source)
    _decrypt_comments(docs, key)
    return SopsDocument(documents=docs, metadata=meta, source=source)


def _verify_mac(meta: SopsMetadata, key: bytes, computed: str, source: str) -> None:
    stored = None
    for aad in _mac_aads(meta.lastmodified):
        try:
            stored = decrypt_value(meta.mac, key, aad)
            break
        except ValueAuthError:
            continue
        except MalformedValueError:
            raise MalformedValueError(f"{source}: sops.mac is not an ENC value") from None
    if stored is None:
        raise MacMismatchError(f"{source}: MAC mismatch (sops.mac or lastmodified was altered)")
    if not isinstance(stored, str) or stored.upper() != computed:
        raise MacMismatchError(f"{source}: MAC mismatch (the values were altered)")


def decrypt_file(
    path: str | os.PathLike[str], identities: Iterable[IdentityLike] | None = None
) -> SopsDocument:
    """Read and decrypt a SOPS YAML file; the plaintext only lives in the result."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SopsError(f"{path}: {exc.strerror or exc}") from None
    return decrypt_text(text, identities, source=str(path))


# --- encrypt --------------------------------------------------------------------------------


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encrypt_documents(
    docs: Sequence[Mapping[str, Any]],
    rule: CreationRule,
    *,
    indent: int | None = None,
) -> str:
    """The ciphertext text of `docs` for `rule`: fresh data key, fresh IVs, new MAC.

    `docs` are not modified. `indent` defaults to the rule's `stores.yaml.indent`.
    """
    if not docs:
        raise SopsError("nothing to encrypt: no YAML documents")
    work = copy.deepcopy(list(docs))
    for doc in work:
        if not isinstance(doc, Mapping):
            raise SopsError("every YAML document to encrypt must be a mapping")
        if "sops" in doc:
            raise SopsError("the document already has a sops key (already encrypted?)")
    selector = rule.selector.normalized()
    key = new_data_key()
    mac = MacBuilder(selector.mac_only_encrypted)

    def leaf(value: Any, path: tuple[str, ...]) -> Any:
        _check_scalar(value, path)
        if type(value).__name__ == "ScalarBoolean":
            value = bool(value)
        encrypted = selector.should_encrypt(path)
        mac.add(value, encrypted)
        if encrypted:
            return encrypt_value(value, key, ":".join(path) + ":")
        return value

    seen: set[int] = set()
    for doc in work:
        _walk(doc, (), leaf, seen)
        _encrypt_comments(doc, selector, key)
    lastmodified = _utc_now()
    mac_enc = encrypt_value(mac.hexdigest(), key, lastmodified)
    age = [(r, wrap_data_key(key, r)) for r in rule.age]
    out = []
    for doc in work:
        if not isinstance(doc, CommentedMap):
            doc = CommentedMap(doc)
        doc["sops"] = _metadata_block(age, selector, lastmodified, mac_enc)
        out.append(doc)
    return _dump_all(out, indent or rule.indent)


def guess_indent(text: str) -> int:
    """The indentation step of a YAML text (first indented mapping line), default 4."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and stripped[0] not in "#-" and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 4


def reencrypt(
    path: str | os.PathLike[str],
    identities: Iterable[IdentityLike] | None,
    rule: CreationRule | None = None,
    *,
    indent: int | None = None,
) -> str:
    """New ciphertext for a file with a fresh data key (rekeying when `rule` is given).

    Without `rule` the file keeps its recipients and value selector.
    """
    path = Path(path)
    doc = decrypt_file(path, identities)
    if rule is None:
        rule = CreationRule(age=doc.metadata.recipients, selector=doc.metadata.selector)
        indent = indent or guess_indent(path.read_text())
    return encrypt_documents(doc.documents, rule, indent=indent)


def is_sops_file(text_or_data: str | Mapping[str, Any] | Sequence[Any]) -> bool:
    """True for SOPS YAML text, a parsed document, or a list of documents with metadata."""
    data: Any = text_or_data
    if isinstance(text_or_data, str):
        try:
            docs = load_yaml_documents(text_or_data, "<text>")
        except NotSopsFileError:
            return False
        data = docs[0] if docs else None
    elif isinstance(text_or_data, Sequence):
        data = text_or_data[0] if text_or_data else None
    if not isinstance(data, Mapping):
        return False
    meta = data.get("sops")
    return isinstance(meta, Mapping) and "mac" in meta and "lastmodified" in meta


def write_encrypted(path: str | os.PathLike[str], text: str) -> None:
    """Write ciphertext atomically (temp file in the same dir, fsync, rename).

    Refuses text that is not a SOPS file, so plaintext cannot be written by mistake.
    """
    if not is_sops_file(text):
        raise SopsError(f"{path}: refusing to write text that is not SOPS-encrypted")
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
