"""Text from a cluster is untrusted: no control character or escape sequence in it may reach
a terminal. Everything an API says is made safe here, once, as it is decoded, so the
console, `status` and every later reader only ever hold printable text.

Control characters are shown, not dropped (an operator should see that a name carried an
ESC): C0 and DEL become their Unicode control pictures (ESC -> ␛), C1 and the bidi
overrides that reorder what a terminal shows become U+FFFD. Newlines and tabs stay: they
are layout, not commands, and readers that need one line fold them.
"""

from __future__ import annotations

import re
from typing import Any

_KEEP = "\n\t"
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def _picture(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    return "\ufffd"


def clean(text: str) -> str:
    """`text` with every control character shown visibly (see the module docstring)."""
    return _UNSAFE.sub(_picture, text) if _UNSAFE.search(text) else text


def clean_tree(value: Any) -> Any:
    """Every string (keys too) in decoded JSON made safe, in a new structure."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_tree(v) for v in value]
    return value


# In JSON text a control character is written as an escape (\u001b, \r, \b, \f) or, for
# DEL, C1 and the bidi marks, as itself. Scanning left to right, an escaped backslash
# (`\\`) is consumed whole, so `\\u001b` (a backslash, then the letters u001b) is never
# read as an escape; every alternative starts with a backslash or the character itself,
# which keeps the scan fast on megabytes of pods.
_JSON_UNSAFE = re.compile(
    r"\\(?:\\|u00[01][0-9a-fA-F]|u007[fF]|u00[89][0-9a-fA-F]"
    r"|u061[cC]|u200[efEF]|u202[a-eA-E]|u206[6-9]|[rbf])"
    f"|[\x7f-\x9f{_BIDI}]"
)
_SHORT = {"\\r": "\r", "\\b": "\b", "\\f": "\f"}


def _json_picture(match: re.Match[str]) -> str:
    text = match.group()
    if not text.startswith("\\"):  # a raw character
        return _picture(match)
    if text == "\\\\":
        return text  # an escaped backslash: not an escape of a control character
    char = _SHORT.get(text) or chr(int(text[2:], 16))
    if char in _KEEP:
        return text
    return f"\\u{ord(_picture_of(char)):04x}"


def _picture_of(char: str) -> str:
    return _UNSAFE.sub(_picture, char)


# What any control character in JSON text starts with: a cheap substring test over the
# bytes (no regex) lets the common document, which has none, through untouched.
_NEEDLES = (
    *(b"\\u00" + d for d in (b"0", b"1", b"8", b"9")),
    b"\\u007f",
    b"\\u007F",
    *(b"\\u" + p for p in (b"200", b"202", b"206", b"061")),
    b"\\r",
    b"\\b",
    b"\\f",
    b"\x7f",
    b"\xc2",  # UTF-8 lead byte of C1 controls (and of U+00A0..U+00BF)
    b"\xe2\x80",  # bidi marks and overrides (and dashes, quotes, ellipsis)
    b"\xe2\x81",
    b"\xd8\x9c",
)


def clean_json(data: bytes | str) -> str:
    """JSON text whose strings, once decoded, hold no control characters: a single pass
    over the text, cheap enough for 20,000 pods (most documents need no change at all)."""
    raw = data if isinstance(data, bytes) else data.encode()
    if not any(needle in raw for needle in _NEEDLES):
        return raw.decode("utf-8")
    return _JSON_UNSAFE.sub(_json_picture, raw.decode("utf-8"))
