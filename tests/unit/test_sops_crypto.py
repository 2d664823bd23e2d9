"""SOPS value crypto: the upstream AES test vector, Go scalar encodings, the MAC seed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from dapper.backends.sops.crypto import (
    MAC_ONLY_ENCRYPTED_INIT,
    Comment,
    decrypt_value,
    encrypt_value,
    go_format_float,
    go_format_time,
    parse_go_time,
    to_bytes,
)
from dapper.backends.sops.errors import MalformedValueError, ValueAuthError

# aes/cipher_test.go in getsops/sops (protocols.md §4.1).
VECTOR_KEY = b"f" * 32
VECTOR = (
    "ENC[AES256_GCM,data:oYyi,iv:MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=,"
    "tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]"
)


def test_upstream_vector_decrypts_with_its_path() -> None:
    assert decrypt_value(VECTOR, VECTOR_KEY, "bar:") == "foo"


def test_upstream_vector_fails_without_its_path() -> None:
    with pytest.raises(ValueAuthError):
        decrypt_value(VECTOR, VECTOR_KEY, "")


def test_same_iv_reproduces_the_vector() -> None:
    iv = base64.b64decode("MyIDYbT718JRr11QtBkcj3Dwm4k1aCGZBVeZf0EyV8o=")
    assert encrypt_value("foo", VECTOR_KEY, "bar:", iv=iv) == VECTOR


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("sécret", "str"),
        (42, "int"),
        (-7, "int"),
        (3.14, "float"),
        (True, "bool"),
        (False, "bool"),
        (dt.datetime(2001, 12, 14, 21, 59, 43, 100000, tzinfo=dt.UTC), "time"),
        (Comment(" a comment"), "comment"),
    ],
)
def test_round_trip_keeps_type_and_uses_fresh_iv(value: object, kind: str) -> None:
    key = b"k" * 32
    first = encrypt_value(value, key, "a:b:")
    second = encrypt_value(value, key, "a:b:")
    assert first.endswith(f"type:{kind}]")
    assert first != second  # a fresh random IV every time
    assert decrypt_value(first, key, "a:b:") == value
    assert type(decrypt_value(first, key, "a:b:")) is type(value)


def test_empty_string_is_left_as_is() -> None:
    assert encrypt_value("", b"k" * 32, "a:") == ""
    assert decrypt_value("", b"k" * 32, "a:") == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234568000.0, "1234568000"),
        (3.14, "3.14"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (1000.0, "1000"),
        (-0.5, "-0.5"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_float_bytes_match_go_formatfloat(value: float, text: str) -> None:
    assert go_format_float(value) == text


def test_scalar_bytes_match_go() -> None:
    assert to_bytes(True) == b"True"
    assert to_bytes(False) == b"False"
    assert to_bytes(31) == b"31"
    assert to_bytes(dt.date(2024, 1, 1)) == b"2024-01-01T00:00:00Z"
    tz = dt.timezone(-dt.timedelta(hours=5))
    stamp = dt.datetime(2001, 12, 14, 21, 59, 43, 100000, tzinfo=tz)
    assert go_format_time(stamp) == "2001-12-14T21:59:43.1-05:00"
    assert parse_go_time("2001-12-14T21:59:43.1-05:00") == stamp


def test_mac_only_encrypted_seed_is_sha256_of_sops() -> None:
    assert MAC_ONLY_ENCRYPTED_INIT.hex() == (
        "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69"
    )
    assert hashlib.sha256(b"sops").digest() == MAC_ONLY_ENCRYPTED_INIT


@pytest.mark.parametrize(
    "text",
    [
        "ENC[AES256_GCM,data:oYyi]",
        "not encrypted",
        "ENC[AES256_GCM,data:!!!,iv:MyID,tag:t5z2Z023Up0kxwCgw1gNxg==,type:str]",
    ],
)
def test_malformed_values_are_reported(text: str) -> None:
    with pytest.raises(MalformedValueError):
        decrypt_value(text, VECTOR_KEY, "bar:")
