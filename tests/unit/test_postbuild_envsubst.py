"""postBuild substitution against fluxcd/pkg envsubst v1.4 (kustomize-controller v1.6):
each form, its quirks (`=`, `:+` and friends all mean "value if non-empty, else default";
`-` and `+` without a colon do not parse), the `$$` escape, strict mode and the errors."""

from __future__ import annotations

import pytest
from dapper.backends.gitops.postbuild import (
    EnvsubstError,
    check_names,
    is_disabled,
    post_build_error,
    substitute,
    variables_in,
)

VALUES = {
    "APP": "plex",
    "EMPTY": "",
    "MIXED": "Hello World",
    "FILE": "/data/media/movie.tar.gz",
    "REPEAT": "abcABCabc",
}


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("plain text", "plain text"),
        ("${APP}", "plex"),
        ("a-${APP}-b", "a-plex-b"),
        ("${UNSET}", ""),  # non-strict: the empty string
        # the default family: value when set and non-empty, else the default
        ("${UNSET:=d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${UNSET=d}", "d"),
        ("${EMPTY=d}", "d"),  # bash would give "" here
        ("${EMPTY:-d}", "d"),
        ("${APP:-d}", "plex"),
        ("${APP=d}", "plex"),
        ("${APP:+x}", "plex"),  # bash would give "x"
        ("${UNSET:+x}", "x"),  # bash would give ""
        ("${UNSET:?boom}", "boom"),
        ("${UNSET:=${APP}}", "plex"),  # nested default
        ("${UNSET:=pre-${APP}-post}", "pre-plex-post"),
        # case
        ("${MIXED^^}", "HELLO WORLD"),
        ("${MIXED,,}", "hello world"),
        ("${APP^}", "Plex"),
        ("${MIXED,}", "hello World"),
        # length, substring
        ("${#APP}", "4"),
        ("${APP:1}", "lex"),
        ("${APP:1:2}", "le"),
        ("${APP:-2}", "plex"),  # `:-` is the default form, not a substring
        ("${APP:9}", ""),
        # replace
        ("${REPEAT/abc/x}", "xABCabc"),
        ("${REPEAT//abc/x}", "xABCx"),
        ("${REPEAT/#abc/x}", "xABCabc"),
        ("${REPEAT/%abc/x}", "abcABCx"),
        ("${REPEAT//abc/}", "ABC"),
        # trim a glob (its `*` matches `/` too)
        ("${FILE#*/}", "data/media/movie.tar.gz"),
        ("${FILE##*/}", "movie.tar.gz"),
        ("${FILE%.*}", "/data/media/movie.tar"),
        ("${FILE%%.*}", "/data/media/movie"),
        # escapes: `$$` is `$` everywhere, a lone `$` is text
        ("$${APP}", "${APP}"),
        ("$$x and $$", "$x and $"),
        ("cost: $5", "cost: $5"),
        ("$$${APP}", "$plex"),
    ],
)
def test_forms(text: str, out: str) -> None:
    assert substitute(text, VALUES).text == out


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("${APP-d}", "missing closing brace"),  # `-` without a colon is no form
        ("${APP+x}", "missing closing brace"),
        ("${APP", "missing closing brace"),
        ("${}", "unable to parse variable name"),
        ("${-x}", "unable to parse variable name"),
        ("${APP:-d", "unable to parse substitution within function"),
        ("${APP^^x}", "bad substitution"),
        ("${REPEAT//abc}", "bad substitution"),  # the replacement needs its slash
    ],
)
def test_malformed_text_is_an_error(text: str, error: str) -> None:
    with pytest.raises(EnvsubstError) as exc:
        substitute(text, VALUES)
    assert str(exc.value) == error


def test_strict_mode_refuses_only_a_bare_unset_variable() -> None:
    with pytest.raises(EnvsubstError) as exc:
        substitute("x: ${UNSET}", VALUES, strict=True)
    assert str(exc.value) == 'variable not set (strict mode): "UNSET"'
    assert substitute("${EMPTY}", VALUES, strict=True).text == ""  # set, if empty
    assert substitute("${UNSET:=d}", VALUES, strict=True).text == "d"
    assert substitute("${UNSET^^}", VALUES, strict=True).text == ""
    with pytest.raises(EnvsubstError):  # a default's own text is evaluated first
        substitute("${APP:=${UNSET}}", VALUES, strict=True)


def test_undefined_and_kept_names() -> None:
    res = substitute("${A}-${B:=x}-${APP:=${C}}-${D:=${E}}", VALUES)
    assert res.text == "-x-plex-" and res.undefined == {"A", "E"}  # C's default is unused
    kept = substitute("${S}/${S:=d}/${APP}", VALUES, keep=lambda n: n == "S")
    assert kept.text == "${S}/${S:=d}/plex" and not kept.undefined


def test_names_messages_and_markers() -> None:
    check_names({"OK_1": "x", "_x": "y"})
    with pytest.raises(EnvsubstError) as exc:
        check_names({"bad-name": "x"})
    assert str(exc.value) == (
        "'bad-name' var name is invalid, must match '^[_[:alpha:]][_[:alpha:][:digit:]]*$'"
    )
    obj = {"metadata": {"name": "web"}}
    assert post_build_error(obj, EnvsubstError("bad substitution")) == (
        "post build failed for 'web': envsubst error: variable substitution failed: "
        "bad substitution"
    )
    assert variables_in("${A} ${B:=${C}} $${D}") == [("A", False), ("B", True), ("C", False)]
    key = "kustomize.toolkit.fluxcd.io/substitute"
    assert is_disabled({"metadata": {"annotations": {key: "disabled"}}})
    assert is_disabled({"metadata": {"labels": {key: "disabled"}}})
    assert not is_disabled({"metadata": {"labels": {key: "enabled"}}})
