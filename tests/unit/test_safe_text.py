"""The one place untrusted text is made safe: every control character shown, never obeyed."""

from __future__ import annotations

import json

import pytest
from dapper.backends.safe_text import clean, clean_json, clean_tree

HOSTILE = "\x1b[2J\x1b]0;PWNED\x07 \x9b31m \u202eabc \x7f \r\x00"
SHOWN = "␛[2J␛]0;PWNED␇ \ufffd31m \ufffdabc ␡ ␍␀"


def test_clean_shows_each_control_character() -> None:
    assert clean(HOSTILE) == SHOWN
    assert clean("line one\n\tline two") == "line one\n\tline two"  # layout stays
    assert clean("plain é ü ✓") == "plain é ü ✓"


@pytest.mark.parametrize("ascii_only", [True, False])
def test_clean_json_matches_clean_of_the_decoded_strings(ascii_only: bool) -> None:
    doc = {
        "m": HOSTILE,
        f"k{HOSTILE}": [HOSTILE, 1, None],
        "lit": "\\u001b is text",
        "odd": "\\\x1b[2J and \\\\\x1b",  # backslashes right before real escapes
    }
    text = json.dumps(doc, ensure_ascii=ascii_only)
    assert json.loads(clean_json(text)) == clean_tree(doc)
    assert json.loads(clean_json(text.encode()))["lit"] == "\\u001b is text"


def test_clean_json_leaves_safe_documents_alone() -> None:
    text = json.dumps({"a": "b\nc", "n": 1, "u": "ü"}, ensure_ascii=False)
    assert clean_json(text.encode()) == text
