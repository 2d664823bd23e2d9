"""The lab's postBuild substitution runs over each resource's whole YAML text, as
fluxcd/pkg's SubstituteVariables does (Resource.AsYAML, envsubst on the text, then
YAMLToJSON with go-yaml v2): what a value turns into depends on the text it makes."""

from __future__ import annotations

from typing import Any

import pytest
from dapper.backends.gitops.postbuild import EnvsubstError, post_build_error
from dapper.lab.flux_substitute import (
    SubstitutionError,
    resolve_v2,
    substitute_resource,
    to_yaml,
)


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "${APP}"}},
        "spec": spec,
    }


def test_a_number_variable_becomes_a_number_quoted_in_git_or_not() -> None:
    # the file's quotes are gone once kustomize's resource went through JSON
    out = substitute_resource(deployment(replicas="${REPLICAS}"), {"REPLICAS": "3", "APP": "a"})
    assert out["spec"]["replicas"] == 3
    assert out["metadata"]["labels"]["app"] == "a"


def test_text_around_a_variable_keeps_it_a_string() -> None:
    out = substitute_resource(deployment(image="web:${TAG}"), {"TAG": "1.0"})
    assert out["spec"]["image"] == "web:1.0"


def test_a_variable_in_a_key_is_substituted() -> None:
    obj = deployment(selector={"matchLabels": {"${KEY}": "x"}})
    out = substitute_resource(obj, {"KEY": "team", "APP": "a"})
    assert out["spec"]["selector"]["matchLabels"] == {"team": "x"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("yes", True),  # go-yaml v2 reads YAML 1.1 booleans
        ("off", False),
        ("y", True),
        ("null", None),
        ("", None),
        ("~", None),
        ("0777", 511),  # a 1.1 octal
        ("0x1F", 31),
        ("1_000", 1000),
        ("1.5", 1.5),
        ("1e3", 1000),  # Go's JSON writes the float 1000 as 1000
        ("[a, b]", ["a", "b"]),
        ("{a: 1}", {"a": 1}),
        ("x # a comment", "x"),
        ("#x", None),
        ("yes please", "yes please"),
        ('say "hi"', 'say "hi"'),
    ],
)
def test_a_whole_value_is_read_as_yaml(value: str, expected: Any) -> None:
    out = substitute_resource(deployment(field="${V}"), {"V": value, "APP": "a"})
    assert out["spec"]["field"] == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a: b", "mapping values are not allowed in this context"),
        ("*anchor", "found undefined alias"),
        ("- a", "block sequence entries are not allowed in this context"),
        ("@x", "found character that cannot start any token"),
    ],
)
def test_a_value_that_breaks_the_yaml_fails_the_build(value: str, problem: str) -> None:
    obj = deployment(field="${V}")
    with pytest.raises(SubstitutionError) as caught:
        substitute_resource(obj, {"V": value, "APP": "a"})
    assert str(caught.value).startswith("YAMLToJSON: yaml: line ")
    assert str(caught.value).endswith(problem)
    assert post_build_error(obj, caught.value).startswith(
        "post build failed for 'web': envsubst error: YAMLToJSON: yaml: line "
    )


def test_infinity_is_refused_as_go_json_refuses_it() -> None:
    with pytest.raises(SubstitutionError, match=r"json: unsupported value: \+Inf"):
        substitute_resource(deployment(field="${V}"), {"V": ".inf", "APP": "a"})


def test_strings_that_would_read_back_otherwise_are_quoted_and_kept() -> None:
    obj = deployment(
        a="yes", b="3", c="", d="2001-12-14", e="1:20", f="null", g="multi\nline ${APP}\n"
    )
    text = to_yaml(obj)
    for quoted in ('"yes"', '"3"', '""', '"2001-12-14"', '"1:20"', '"null"'):
        assert quoted in text, text
    out = substitute_resource(obj, {"APP": "web"})
    assert out["spec"] == {
        "a": "yes",
        "b": "3",
        "c": "",
        "d": "2001-12-14",
        "e": "1:20",
        "f": "null",
        "g": "multi\nline web\n",  # a literal block stays a string
    }


def test_single_quoted_text_breaks_on_a_quote_as_upstream() -> None:
    # "'${V}'" is written '''${V}''' (it starts with a quote): a value with a quote ends it
    with pytest.raises(SubstitutionError):
        substitute_resource(deployment(field="'${V}'"), {"V": "it's", "APP": "a"})
    out = substitute_resource(deployment(field="'${V}'"), {"V": "fine", "APP": "a"})
    assert out["spec"]["field"] == "'fine'"


def test_envsubst_errors_come_through() -> None:
    with pytest.raises(EnvsubstError, match="missing closing brace"):
        substitute_resource(deployment(field="${V-d}"), {"V": "x"})


def test_an_object_without_a_dollar_is_left_as_it_is() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "yes", "b": 1.0}}
    assert substitute_resource(obj, {"V": "x"}) == obj


def test_resolve_v2_scalars() -> None:
    assert resolve_v2("ON") is True
    assert resolve_v2("-0b11") == -3
    assert resolve_v2("0o17") == 15
    assert resolve_v2("+12") == 12
    assert resolve_v2("1.2.3") == "1.2.3"
