"""Reading the few protobuf request bodies kubectl sends the lab.

kubectl's typed clients (e.g. `kubectl auth can-i`) POST application/vnd.kubernetes.protobuf:
the 4-byte "k8s\\0" magic, then a runtime.Unknown {typeMeta, raw}. The lab decodes the
authorization reviews' specs only (their field numbers follow the Go structs); answers go
back as JSON, which those clients accept second.
"""

from __future__ import annotations

from dapper.lab.store import StoreError

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message -> {field number: (json name, nested message or "" for a string)}
_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "SelfSubjectAccessReview": {2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes"),
        2: ("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: ("namespace", ""),
        2: ("verb", ""),
        3: ("group", ""),
        4: ("version", ""),
        5: ("resource", ""),
        6: ("subresource", ""),
        7: ("name", ""),
    },
    "NonResourceAttributes": {1: ("path", ""), 2: ("verb", "")},
    "SelfSubjectRulesReview": {2: ("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "")},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise StoreError(400, "BadRequest", "truncated protobuf body")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, bytes or int) pairs of one message."""
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise StoreError(400, "BadRequest", f"unsupported protobuf wire type {wire}")
    return out


def _message(data: bytes, name: str) -> dict:
    schema = _MESSAGES[name]
    out: dict = {}
    for number, value in fields(data):
        if number not in schema or not isinstance(value, bytes):
            continue
        key, nested = schema[number]
        out[key] = _message(value, nested) if nested else value.decode()
    return out


def decode(body: bytes) -> dict:
    """A protobuf-encoded object of a kind in _MESSAGES, as its JSON form."""
    if not body.startswith(MAGIC):
        raise StoreError(400, "BadRequest", "protobuf body without the k8s magic prefix")
    type_meta: dict = {}
    raw = b""
    for number, value in fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            parts = dict(fields(value))
            type_meta = {
                "apiVersion": bytes(parts.get(1, b"")).decode(),  # type: ignore[arg-type]
                "kind": bytes(parts.get(2, b"")).decode(),  # type: ignore[arg-type]
            }
        elif number == 2 and isinstance(value, bytes):
            raw = value
    kind = type_meta.get("kind", "")
    if kind not in _MESSAGES:
        raise StoreError(
            415, "UnsupportedMediaType", f"the lab reads {kind or 'this kind'} as JSON only"
        )
    return {**type_meta, **_message(raw, kind)}
