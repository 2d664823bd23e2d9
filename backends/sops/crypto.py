"""SOPS value encryption: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` strings and the MAC.

Everything here works on bytes and Python scalars in memory. Scalars are encoded the way
sops (Go) encodes them, because the MAC is computed over those bytes: an int as its
decimal digits, a float with Go's `FormatFloat(f, 'f', -1, 64)`, a bool as `True`/`False`,
a timestamp as RFC 3339 with nanoseconds (`time.MarshalText`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dapper.backends.sops.errors import MalformedValueError, ValueAuthError

IV_SIZE = 32  # sops uses NewGCMWithNonceSize(…, 32)
TAG_SIZE = 16
DATA_KEY_SIZE = 32

# The same pattern sops parses with (unanchored at the end, as in Go).
ENC_RE = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]", re.DOTALL)

# sha256(b"sops"): fed first into the MAC when `mac_only_encrypted` is set.
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$"
)


@dataclass(frozen=True)
class Comment:
    """A YAML comment's text (after the `#`) as sops encrypts it: `type:comment`."""

    text: str


# --- scalar encodings -------------------------------------------------------------------


def go_format_float(value: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): shortest round-trip digits, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def go_format_time(value: dt.date) -> str:
    """Go's time.MarshalText (RFC 3339 with trailing-zero-free fractions); naive means UTC."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    offset = value.utcoffset() if value.tzinfo else dt.timedelta(0)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def parse_go_time(text: str) -> dt.datetime:
    """Parse RFC 3339 (as Go writes it); fractions beyond microseconds are truncated."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = dt.UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        delta = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tz = dt.timezone(sign * delta)
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def value_type(value: object) -> str:
    """The sops `type:` name for a Python scalar (raises TypeError for anything else)."""
    if isinstance(value, Comment):
        return "comment"
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dt.date):
        return "time"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    raise TypeError(f"sops cannot encrypt a value of type {type(value).__name__}")


def to_bytes(value: object) -> bytes:
    """The plaintext bytes sops encrypts and feeds into the MAC for `value`."""
    kind = value_type(value)  # the same tests as below; it also refuses other types
    if isinstance(value, Comment):
        return value.text.encode()
    if kind == "bool":
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(int(value)).encode()
    if isinstance(value, float):
        return go_format_float(float(value)).encode()
    if isinstance(value, dt.date):
        return go_format_time(value).encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode()


def from_bytes(raw: bytes, kind: str) -> object:
    """Inverse of `to_bytes` for a `type:` name (ValueError on a bad encoding)."""
    if kind == "str":
        return raw.decode()
    if kind == "int":
        return int(raw.decode(), 10)
    if kind == "float":
        return float(raw.decode())
    if kind == "bool":
        text = raw.decode()
        if text in _GO_TRUE:
            return True
        if text in _GO_FALSE:
            return False
        raise ValueError("not a Go bool")
    if kind == "time":
        return parse_go_time(raw.decode())
    if kind == "comment":
        return Comment(raw.decode())
    if kind == "bytes":
        return raw
    raise ValueError(f"unknown sops value type {kind!r}")


# --- AES-256-GCM values -----------------------------------------------------------------


def encrypt_value(value: object, key: bytes, aad: str, *, iv: bytes | None = None) -> str:
    """Encrypt one scalar to an ENC string with a fresh random 32-byte IV (unless given)."""
    kind = value_type(value)
    if kind == "str" and value == "":
        return ""  # sops leaves empty strings as they are
    iv = os.urandom(IV_SIZE) if iv is None else iv
    sealed = AESGCM(key).encrypt(iv, to_bytes(value), aad.encode())
    data, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(data).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(tag).decode()},type:{kind}]"
    )


def decrypt_value(text: str, key: bytes, aad: str, *, where: str = "") -> object:
    """Decrypt an ENC string to a typed Python value (`Comment` for comments).

    Raises MalformedValueError for a string that is not a well-formed ENC value and
    ValueAuthError when AES-GCM authentication fails (tampered value or wrong path).
    """
    if text == "":
        return ""
    label = f" at {where}" if where else ""
    m = ENC_RE.match(text)
    if not m:
        raise MalformedValueError(f"value{label} is not an ENC[AES256_GCM,...] string")
    try:
        data, iv, tag = (base64.b64decode(g, validate=True) for g in m.groups()[:3])
    except (binascii.Error, ValueError) as exc:
        raise MalformedValueError(f"value{label} has invalid base64 in its ENC fields") from exc
    kind = m.group(4)
    if len(tag) != TAG_SIZE or not iv:
        raise MalformedValueError(f"value{label} has a bad IV or tag length")
    try:
        raw = AESGCM(key).decrypt(iv, data + tag, aad.encode())
    except InvalidTag as exc:
        raise ValueAuthError(
            f"value{label} failed authentication (tampered, moved, or another data key)"
        ) from exc
    try:
        return from_bytes(raw, kind)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedValueError(f"value{label} does not decode as type {kind}") from exc


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_SIZE)


class MacBuilder:
    """SHA-512 over the plaintext bytes of the leaves, in document order, no separators."""

    def __init__(self, mac_only_encrypted: bool) -> None:
        self._hash = hashlib.sha512()
        self.mac_only_encrypted = mac_only_encrypted
        if mac_only_encrypted:
            self._hash.update(MAC_ONLY_ENCRYPTED_INIT)

    def add(self, value: object, encrypted: bool) -> None:
        if isinstance(value, Comment) or value is None:
            return
        if self.mac_only_encrypted and not encrypted:
            return
        self._hash.update(to_bytes(value))

    def hexdigest(self) -> str:
        return self._hash.hexdigest().upper()
