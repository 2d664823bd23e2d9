"""Flux postBuild variable substitution, as fluxcd/pkg's envsubst (v1.4, the one
kustomize-controller v1.6 builds with) does it.

Flux substitutes after kustomize has built a path: every object not labelled or annotated
`kustomize.toolkit.fluxcd.io/substitute: disabled`, and only when the Kustomization has at
least one variable (no variables: nothing is touched, `${X}` stays). The grammar is
envsubst's, a bash look-alike with its own quirks, kept here on purpose:

- `${V}`; `$$` is an escape for `$` anywhere in the text (`$${V}` gives `${V}`, `$$x`
  gives `$x`); a `$` not followed by `{` is plain text;
- `${V:-d}`, `${V:=d}`, `${V=d}`, `${V:?d}` and `${V:+d}` all mean "V if it is non-empty,
  else d" (so `${V:+x}` gives V's value when set, unlike bash); `${V-d}` and `${V+d}`
  are not forms at all: "missing closing brace";
- `${V^}`, `${V^^}`, `${V,}`, `${V,,}` (case), `${#V}` (length), `${V:1:2}` (substring),
  `${V/a/b}`, `${V//a/b}`, `${V/#a/b}`, `${V/%a/b}` (replace), `${V#p}`, `${V##p}`,
  `${V%p}`, `${V%%p}` (trim a glob);
- an unset variable is the empty string, or, in strict mode (the controller's
  StrictPostBuildSubstitutions feature gate), an error for a bare `${V}`:
  `variable not set (strict mode): "V"`; malformed text is an error too ("bad
  substitution", "unable to parse variable name", ...).

Values that must stay unknown (cluster-secrets, which the console's parser never
decrypts) are passed as `keep`: their `${...}` text is left in place instead of being
emptied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

NAME_RE = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
VAR_NAME_RE = "^[_[:alpha:]][_[:alpha:][:digit:]]*$"  # as kustomize-controller prints it
DISABLE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"
DISABLED = "disabled"


class EnvsubstError(ValueError):
    """envsubst refused the text (its own wording, without Flux's prefixes)."""


BAD_SUBSTITUTION = "bad substitution"
MISSING_CLOSING_BRACE = "missing closing brace"
PARSE_VARIABLE_NAME = "unable to parse variable name"
PARSE_FUNC_SUBSTITUTION = "unable to parse substitution within function"
PARSE_DEFAULT_FUNCTION = "unable to parse default function"


@dataclass
class SubstResult:
    text: str
    undefined: set[str] = field(default_factory=set)  # referenced, no value, no default


# -- the scanner: runes, tokens and modes as envsubst's parse package has them -----------

_EOF = ""
_T_ILLEGAL, _T_EOF, _T_IDENT, _T_LBRACK, _T_RBRACK = range(5)
_M_IDENT, _M_LBRACK, _M_RBRACK, _M_ESCAPE = 1, 2, 4, 8
_E_DOLLAR, _E_BACKSLASH = 1, 2

Accept = Callable[[str, int], bool]


def _any(_r: str, _i: int) -> bool:
    return True


def _ident(r: str, _i: int) -> bool:
    return r.isalpha() or r.isdigit() or r == "_"


class _Scanner:
    def __init__(self, buf: str) -> None:
        self.buf = buf
        self.pos = 0
        self.start = 0
        self.width = 0
        self.mode = 0
        self.escape = 0
        self.accept: Accept = _any

    def read(self) -> str:
        if self.pos >= len(self.buf):
            self.width = 0
            return _EOF
        self.width = 1
        self.pos += 1
        return self.buf[self.pos - 1]

    def unread(self) -> None:
        self.pos -= self.width

    def peek(self) -> str:
        r = self.read()
        self.unread()
        return r

    def skip(self) -> None:
        """Drop the rune just read (the first `$` of `$$`); the next one is kept."""
        self.buf = self.buf[: self.pos - 1] + self.buf[self.pos :]

    def text(self) -> str:
        return self.buf[self.start : self.pos]

    def scan(self) -> int:
        self.start = self.pos
        r = self.read()
        if r == _EOF:
            return _T_EOF
        if self._lbrack(r):
            return _T_LBRACK
        if self.mode & _M_RBRACK and r == "}":
            return _T_RBRACK
        if self._ident(r):
            return _T_IDENT
        return _T_ILLEGAL

    def _lbrack(self, r: str) -> bool:
        if not self.mode & _M_LBRACK or r != "$":
            return False
        if self.read() == "{":
            return True
        self.unread()
        return False

    def _escaped(self, r: str) -> bool:
        if not self.mode & _M_ESCAPE:
            return False
        if r == "$" and self.escape & _E_DOLLAR and self.peek() == "$":
            return True
        return r == "\\" and bool(self.escape & _E_BACKSLASH) and self.peek() in ("/", "\\")

    def _ident(self, r: str) -> bool:
        if not self.mode & _M_IDENT:
            return False
        if self._escaped(r):
            self.skip()
        elif not self.accept(r, self.pos - self.start):
            return False
        while True:
            r = self.read()
            if r == _EOF:
                self.unread()
                return True
            if self._lbrack(r):
                self.unread()
                self.unread()
                return True
            if self._escaped(r):
                self.skip()
                continue
            if not self.accept(r, self.pos - self.start):
                self.unread()
                return True


# -- the parse tree -------------------------------------------------------------------


@dataclass
class _Func:
    param: str
    name: str = ""  # "" for a bare ${V}; else the operator (":-", "^^", "//", ...)
    args: list[_Node] = field(default_factory=list)
    raw: str = ""  # the source text, for values the caller keeps unknown


_Node = str | _Func


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = _Scanner(text)

    def parse(self) -> list[_Node]:
        nodes: list[_Node] = []
        while True:
            s = self.s
            s.accept, s.mode, s.escape = _any, _M_IDENT | _M_LBRACK | _M_ESCAPE, _E_DOLLAR
            began = s.pos
            tok = s.scan()
            if tok == _T_EOF:
                return nodes
            if tok == _T_IDENT:
                nodes.append(s.text())
            elif tok == _T_LBRACK:
                nodes.append(self.func(began))
            else:
                raise EnvsubstError(BAD_SUBSTITUTION)

    def func(self, began: int) -> _Func:
        node = self._func()
        node.raw = self.s.buf[began : self.s.pos]
        return node

    def _func(self) -> _Func:
        s = self.s
        s.escape = _E_DOLLAR | _E_BACKSLASH
        if s.peek() == "#":
            return self._length()
        s.accept, s.mode = _ident, _M_IDENT
        if s.scan() != _T_IDENT:
            raise EnvsubstError(PARSE_VARIABLE_NAME)
        name = s.text()
        nxt = s.peek()
        if nxt == ":":
            return self._default_or_substr(name)
        if nxt == "=":
            return self._default(name)
        if nxt in (",", "^"):
            return self._casing(name)
        if nxt == "/":
            return self._replace(name)
        if nxt == "#":
            return self._remove(name, "#")
        if nxt == "%":
            return self._remove(name, "%")
        s.accept, s.mode = _ident, _M_RBRACK
        if s.scan() != _T_RBRACK:
            raise EnvsubstError(MISSING_CLOSING_BRACE)
        return _Func(name)

    def _param(self, accept: Accept, mode: int) -> _Node:
        s = self.s
        s.accept, s.mode = accept, mode | _M_LBRACK
        began = s.pos
        tok = s.scan()
        if tok == _T_LBRACK:
            return self.func(began)
        if tok in (_T_IDENT, _T_RBRACK):
            return s.text()
        raise EnvsubstError(PARSE_FUNC_SUBSTITUTION)

    def _op(self, accept: Accept, error: str = BAD_SUBSTITUTION) -> str:
        s = self.s
        s.accept, s.mode = accept, _M_IDENT
        if s.scan() != _T_IDENT:
            raise EnvsubstError(error)
        return s.text()

    def _rbrack(self) -> None:
        self.s.mode = _M_RBRACK
        if self.s.scan() != _T_RBRACK:
            raise EnvsubstError(BAD_SUBSTITUTION)

    def _default_or_substr(self, name: str) -> _Func:
        s = self.s
        s.read()
        r = s.peek()
        s.unread()
        if r in ("=", "-", "?", "+"):
            return self._default(name)
        node = _Func(name, self._op(lambda r, i: i == 1 and r == ":"))
        node.args.append(self._param(lambda r, _i: r not in (":", "}"), _M_IDENT))
        s.accept, s.mode = (lambda r, _i: r == ":"), _M_IDENT | _M_RBRACK
        tok = s.scan()
        if tok == _T_RBRACK:
            return node
        if tok != _T_IDENT:
            raise EnvsubstError(BAD_SUBSTITUTION)
        node.args.append(self._param(lambda r, _i: r != "}", _M_IDENT))
        self._rbrack()
        return node

    def _default(self, name: str) -> _Func:
        s = self.s

        def op(r: str, i: int) -> bool:
            return (i == 1 and r == ":") or (i == 2 and r in ("=", "-", "?", "+"))

        if s.peek() == "=":
            op = lambda r, i: i == 1 and r == "="  # noqa: E731 - envsubst's acceptOneEqual
        node = _Func(name, self._op(op, PARSE_DEFAULT_FUNCTION))
        while s.peek() != "}":
            node.args.append(self._param(lambda r, _i: r != "}", _M_IDENT))
        self._rbrack()
        return node

    def _casing(self, name: str) -> _Func:
        node = _Func(name, self._op(lambda r, i: r in (",", "^") and i < 3))
        self._rbrack()
        return node

    def _length(self) -> _Func:
        op = self._op(lambda r, i: r == "#" and i == 1)
        node = _Func(self._op(_ident), op)
        self._rbrack()
        return node

    def _remove(self, name: str, mark: str) -> _Func:
        node = _Func(name, self._op(lambda r, i: r == mark and i < 3))
        node.args.append(self._param(lambda r, _i: r != "}", _M_IDENT))
        self._rbrack()
        return node

    def _replace(self, name: str) -> _Func:
        s = self.s

        def op(r: str, i: int) -> bool:
            return (i == 1 and r == "/") or (i == 2 and r in ("/", "#", "%"))

        node = _Func(name, self._op(op))
        node.args.append(self._param(lambda r, _i: r != "/", _M_IDENT | _M_ESCAPE))
        self._op(lambda r, _i: r == "/")
        if s.peek() == "}":
            self._rbrack()
            return node
        node.args.append(self._param(lambda r, _i: r != "}", _M_IDENT | _M_ESCAPE))
        self._rbrack()
        return node


def parse(text: str) -> list[_Node]:
    """The parse tree of `text`; raises EnvsubstError as envsubst's Parse does."""
    return _Parser(text).parse()


# -- evaluation -----------------------------------------------------------------------

_DEFAULT_OPS = {"=", ":=", ":-", ":?", ":+", "-", "+"}


def _glob(pattern: str) -> re.Pattern[str] | None:
    """envsubst's glob (its fork of Go's path.Match, where `*` and `?` match `/` too) as
    a regex; None when the pattern is malformed."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body.startswith("^") else body
            out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out), re.S)
    except re.error:
        return None


def _trim(s: str, pattern: str, longest: bool, suffix: bool) -> str:
    rx = _glob(pattern[::-1] if suffix else pattern)
    if rx is None:
        return s
    text = s[::-1] if suffix else s
    ends = range(len(text), 0, -1)
    hit = ""
    for end in ends:
        if rx.fullmatch(text[:end]):
            hit = text[:end]
            if longest:
                break
    out = text[len(hit) :] if hit else text
    return out[::-1] if suffix else out


def _substr(s: str, args: list[str]) -> str:
    try:
        pos = int(args[0])
    except ValueError:
        return s
    if pos < 0:
        pos = max(len(s) + pos, 0)
    if len(args) == 1:
        return s[pos:]
    try:
        length = int(args[1])
    except ValueError:
        return s
    if pos + length >= len(s):
        return s[pos:]
    return s[pos : pos + length] if length >= 0 else ""


def _apply(name: str, v: str, args: list[str]) -> str:
    if name == ",":
        return v[:1].lower() + v[1:]
    if name == ",,":
        return v.lower()
    if name == "^":
        return v[:1].upper() + v[1:]
    if name == "^^":
        return v.upper()
    if name == "#" and not args:
        return str(len(v.encode()))
    if name in ("#", "##", "%", "%%"):
        return _trim(v, args[0], longest=len(name) == 2, suffix=name[0] == "%") if args else v
    if name == ":":
        return _substr(v, args)
    if name in ("/", "//", "/#", "/%"):
        old, new = args[0], args[1] if len(args) > 1 else ""
        if name == "//":
            return v.replace(old, new)
        if name == "/":
            return v.replace(old, new, 1)
        if len(args) != 2:
            return v
        if name == "/#":
            return new + v[len(old) :] if v.startswith(old) else v
        return v[: len(v) - len(old)] + new if v.endswith(old) else v
    return v if v or not args else "".join(args)  # toDefault: every other operator


class _Eval:
    def __init__(self, values: Mapping[str, str], keep: Callable[[str], bool], strict: bool):
        self.values = values
        self.keep = keep
        self.strict = strict

    def nodes(self, nodes: list[_Node], undefined: set[str]) -> str:
        return "".join(n if isinstance(n, str) else self.func(n, undefined) for n in nodes)

    def func(self, node: _Func, undefined: set[str]) -> str:
        inner: set[str] = set()
        args = [a if isinstance(a, str) else self.func(a, inner) for a in node.args]
        exists = node.param in self.values
        if not exists and self.keep(node.param):
            return node.raw
        if not exists and node.name == "" and self.strict:
            raise EnvsubstError(f"variable not set (strict mode): {json.dumps(node.param)}")
        v = self.values.get(node.param, "")
        if node.name in _DEFAULT_OPS:
            if not v:
                undefined |= inner  # the default is what the text gets
        else:
            undefined |= inner
            if not exists:
                undefined.add(node.param)
        return _apply(node.name, v, args)


def substitute(
    text: str,
    values: Mapping[str, str],
    keep: Callable[[str], bool] = lambda _name: False,
    *,
    strict: bool = False,
) -> SubstResult:
    """envsubst over one string; raises EnvsubstError where envsubst fails."""
    if "$" not in text:
        return SubstResult(text)
    undefined: set[str] = set()
    out = _Eval(values, keep, strict).nodes(parse(text), undefined)
    return SubstResult(out, undefined)


def check_names(values: Mapping[str, str]) -> None:
    """kustomize-controller's variable name check (before any substitution)."""
    for name in values:
        if not NAME_RE.fullmatch(name):
            raise EnvsubstError(f"'{name}' var name is invalid, must match '{VAR_NAME_RE}'")


def variables_in(text: str) -> list[tuple[str, bool]]:
    """(name, has_default) of every `${...}` in a string, nested defaults included
    (nothing for text envsubst would refuse)."""
    try:
        nodes = parse(text)
    except EnvsubstError:
        return []
    found: list[tuple[str, bool]] = []

    def walk(items: list[_Node]) -> None:
        for n in items:
            if isinstance(n, _Func):
                found.append((n.param, n.name in _DEFAULT_OPS))
                walk(n.args)

    walk(nodes)
    return found


def is_disabled(obj: Mapping[str, object]) -> bool:
    """Labelled or annotated `kustomize.toolkit.fluxcd.io/substitute: disabled`."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return False
    for part in ("labels", "annotations"):
        marks = meta.get(part)
        if isinstance(marks, Mapping) and str(marks.get(DISABLE_ANNOTATION, "")) == DISABLED:
            return True
    return False


def post_build_error(obj: Mapping[str, object], exc: Exception) -> str:
    """kustomize-controller's message for a failed substitution in `obj`."""
    meta = obj.get("metadata")
    name = meta.get("name", "") if isinstance(meta, Mapping) else ""
    cause = str(exc)
    if isinstance(exc, EnvsubstError) and "var name is invalid" not in cause:
        cause = f"variable substitution failed: {cause}"
    return f"post build failed for '{name}': envsubst error: {cause}"
