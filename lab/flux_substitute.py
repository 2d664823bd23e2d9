"""postBuild substitution over a resource's whole YAML text, as fluxcd/pkg's
`kustomize.SubstituteVariables` runs it for kustomize-controller.

Upstream serialises each built resource to YAML (`Resource.AsYAML`: the object as JSON,
then `sigs.k8s.io/yaml.JSONToYAML`, go-yaml v2's emitter: keys sorted, a string quoted
only when it would read back as something else, multi-line strings as literal blocks),
runs envsubst on that text, and reads the result back with `YAMLToJSON` (go-yaml v2, so
YAML 1.1 scalars: `yes`/`no`/`on`/`off`/`y`/`n` are booleans). So, as with real Flux:

- `replicas: ${REPLICAS}` becomes an integer, and so does `replicas: "${REPLICAS}"`
  (the quotes of the Git file are gone once the object went through JSON);
- a variable in a key is substituted like any other text;
- a value that substitutes to YAML syntax is read as YAML: `[a, b]` is a list, `a: b`
  fails ("mapping values are not allowed in this context"), `#x` is a comment (null);
- an object labelled or annotated `kustomize.toolkit.fluxcd.io/substitute: disabled`
  is left alone (the caller checks, as before).

libyaml (PyYAML's C binding, which go-yaml was ported from) writes and reads the text, so
quoting and parse errors read as Flux's do. Objects without a `$` anywhere skip the round
trip: envsubst would not change their text, and the emitter quotes whatever would read
back differently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import yaml
from dapper.backends.gitops.postbuild import substitute

_Dumper: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLAIN = "!lab-plain"  # an untagged plain scalar, resolved below as go-yaml v2 does

_BOOL = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), True),
    **dict.fromkeys(("on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE"), False),
    **dict.fromkeys(("off", "Off", "OFF"), False),
}
_NULL = ("", "~", "null", "Null", "NULL")
_SPECIAL_FLOAT = {
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), float("inf")),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), float("-inf")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), float("nan")),
}
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INT_RE = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[0-9]+)")
_BASE60_RE = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_TIMESTAMP_RE = re.compile(r"\d{4}-\d\d?-\d\d?([Tt ].*)?")


class SubstitutionError(ValueError):
    """The substituted text is not a resource any more (upstream's YAMLToJSON error)."""


def resolve_v2(text: str) -> Any:
    """An unquoted scalar as go-yaml v2 reads it into an interface{}."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if text in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text]
    if text[:1] in "+-0123456789.":
        plain = text.replace("_", "")
        if _INT_RE.fullmatch(plain):
            sign = -1 if plain.startswith("-") else 1
            digits = plain.lstrip("+-")
            if digits[:2] in ("0x", "0X"):
                return sign * int(digits[2:], 16)
            if digits[:2] in ("0b", "0B"):
                return sign * int(digits[2:], 2)
            if digits[:2] in ("0o", "0O"):
                return sign * int(digits[2:], 8)
            if len(digits) > 1 and digits.startswith("0"):
                return sign * int(digits, 8)
            return sign * int(digits)
        if _FLOAT_RE.fullmatch(plain):
            return float(plain)
    return text


def _reads_back_as_string(text: str) -> bool:
    """go-yaml v2's encoder writes a string plain only if it resolves to a string and is
    no base-60 float (timestamps resolve to their own tag there, so they are quoted)."""
    if _BASE60_RE.fullmatch(text) or _TIMESTAMP_RE.fullmatch(text):
        return False
    return isinstance(resolve_v2(text), str)


class _Dump(_Dumper):  # type: ignore[misc, valid-type]
    pass


def _represent_str(dumper: Any, data: str) -> Any:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    style = None if _reads_back_as_string(data) else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _represent_float(dumper: Any, data: float) -> Any:
    if data == data and data not in (float("inf"), float("-inf")) and data.is_integer():
        return dumper.represent_int(int(data))  # Go's JSON writes 3.0 as 3
    return dumper.represent_float(data)


_Dump.add_representer(str, _represent_str)
_Dump.add_representer(float, _represent_float)


class _Load(_BaseLoader):  # type: ignore[misc, valid-type]
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _construct(node: Any) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node)
            out[_json_key(key)] = _construct(value_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v) for v in node.value]
    tag, value = node.tag, node.value
    if tag == _PLAIN or tag.endswith((":int", ":float", ":bool", ":null")):
        resolved = resolve_v2(value)
        if isinstance(resolved, float):
            return _json_float(resolved)
        return resolved
    return value


def _json_float(value: float) -> float | int:
    """What Go's JSON makes of a float64: 3.0 is written 3, Inf and NaN are refused."""
    if value != value:
        raise SubstitutionError("YAMLToJSON: json: unsupported value: NaN")
    if value in (float("inf"), float("-inf")):
        sign = "+" if value > 0 else "-"
        raise SubstitutionError(f"YAMLToJSON: json: unsupported value: {sign}Inf")
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def _json_key(key: Any) -> str:
    """sigs.k8s.io/yaml's YAMLToJSON: every key becomes a JSON string."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def has_dollar(node: Any) -> bool:
    if isinstance(node, dict):
        return any(has_dollar(k) or has_dollar(v) for k, v in node.items())
    if isinstance(node, list):
        return any(has_dollar(v) for v in node)
    return isinstance(node, str) and "$" in node


def to_yaml(obj: Mapping[str, Any]) -> str:
    """The resource's text as Resource.AsYAML writes it."""
    data = json.loads(json.dumps(obj))  # plain JSON data (markers and subclasses gone)
    text: str = yaml.dump(
        data,
        Dumper=_Dump,
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=True,
        width=1 << 30,
    )
    return text


def from_yaml(text: str) -> dict[str, Any]:
    """YAMLToJSON then UnmarshalJSON: the substituted text back as an object."""
    try:
        node = yaml.compose(text, Loader=_Load)
    except yaml.MarkedYAMLError as exc:
        line = (exc.problem_mark.line + 1) if exc.problem_mark is not None else 0
        raise SubstitutionError(f"YAMLToJSON: yaml: line {line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SubstitutionError(f"YAMLToJSON: yaml: {exc}") from None
    out = _construct(node) if node is not None else None
    if not isinstance(out, dict):
        raise SubstitutionError(
            "UnmarshalJSON: json: cannot unmarshal non-object into Go value of type "
            "map[string]interface {}"
        )
    return out


def substitute_resource(
    obj: Mapping[str, Any], values: Mapping[str, str], *, strict: bool = False
) -> dict[str, Any]:
    """envsubst over the resource's YAML text, read back as Flux reads it. Raises
    EnvsubstError (the text) or SubstitutionError (the result)."""
    if not has_dollar(obj):
        return dict(obj)
    text = substitute(to_yaml(obj), values, strict=strict).text
    return from_yaml(text)


__all__ = ["SubstitutionError", "from_yaml", "resolve_v2", "substitute_resource", "to_yaml"]
