"""Round-trip YAML edits: only the changed lines change; comments, order and layout stay."""

from __future__ import annotations

import textwrap

import pytest
from dapper.actions.yamledit import YamlEditError, edit_text, set_age_recipients


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(), new.splitlines()
    assert len(a) == len(b), new
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def test_a_value_edit_keeps_comments_key_order_and_quotes() -> None:
    text = textwrap.dedent(
        """\
        # the app's settings
        zeta: 1  # last in the alphabet, first in the file
        alpha:
          image: "ghcr.io/app:1.0"   # pinned
          replicas: 2
        mid: 'single'
        """
    )

    def bump(docs: list) -> None:
        docs[0]["alpha"]["replicas"] = 3

    out = edit_text(text, bump)
    assert changed_lines(text, out) == [("  replicas: 2", "  replicas: 3")]


def test_four_space_indentation_and_indented_lists_are_kept() -> None:
    text = textwrap.dedent(
        """\
        spec:
            values:
                hosts:
                  - a.example  # first
                  - b.example
        """
    )

    def add(docs: list) -> None:
        docs[0]["spec"]["values"]["hosts"].append("c.example")

    out = edit_text(text, add)
    assert out == text + "          - c.example\n"


def test_multi_document_files_keep_their_separators() -> None:
    text = "---\nkind: A\nname: one\n---\nkind: B\nname: two  # keep\n"

    def rename(docs: list) -> None:
        docs[1]["name"] = "three"

    # the comment keeps its column
    assert edit_text(text, rename) == "---\nkind: A\nname: one\n---\nkind: B\nname: three # keep\n"


def test_a_layout_ruamel_cannot_reproduce_is_left_alone_outside_the_edit() -> None:
    text = "items:\n-   # a comment right after the dash\n    name: x\n    size: 1\nother: 1\n"

    def resize(docs: list) -> None:
        docs[0]["other"] = 2

    out = edit_text(text, resize)
    assert out == text.replace("other: 1", "other: 2")


def test_invalid_yaml_is_refused_with_the_source_name() -> None:
    with pytest.raises(YamlEditError, match=r"^values\.yaml: not valid YAML"):
        edit_text("a: [unclosed\n", lambda docs: None, "values.yaml")


SOPS_YAML = """\
creation_rules:
  # talos secrets: a string of recipients
  - path_regex: talos/.*\\.sops\\.ya?ml
    age: >-
      age1old,age1other
  # everything else: key groups
  - path_regex: kubernetes/.*\\.sops\\.ya?ml
    key_groups:
      - age:
          - age1old  # the current key
          - age1other
"""


def test_recipients_are_swapped_in_strings_and_key_groups() -> None:
    changed: list[int] = []

    def swap(docs: list) -> None:
        changed.append(set_age_recipients(docs, ["age1old"], "age1new", keep_old=False))

    out = edit_text(SOPS_YAML, swap)
    assert changed == [2]
    assert "age1old" not in out
    assert "age1other,age1new" in out
    assert "- age1new  # the current key" in out
    assert "# talos secrets: a string of recipients" in out


def test_keeping_the_old_recipient_adds_the_new_one_once() -> None:
    def add(docs: list) -> None:
        set_age_recipients(docs, ["age1old"], "age1new", keep_old=True)

    once = edit_text(SOPS_YAML, add)
    assert once.count("age1new") == 2 and "age1old" in once
    assert edit_text(once, add) == once  # a second run changes nothing


def test_rules_without_the_old_recipient_are_untouched() -> None:
    count: list[int] = []

    def swap(docs: list) -> None:
        count.append(set_age_recipients(docs, ["age1absent"], "age1new", keep_old=False))

    assert edit_text(SOPS_YAML, swap) == SOPS_YAML
    assert count == [0]
