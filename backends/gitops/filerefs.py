"""Local file references in YAML comments and Markdown prose must point at real files.

A comment that sends the reader to `docs/repository-layout.md` when no such file exists
is worse than no comment. A reference is a path with at least one `/` whose last part has
a file extension; URLs, absolute paths (node paths such as /dev/sda), `~`, `$VAR` and
templated paths are not ours to check, nor are fenced code blocks in Markdown (commands
and the files they create). A reference resolves when it exists relative to the file's
directory or any directory above it, relative to `kubernetes/`, or as the tail of a path
under `kubernetes/` (prose such as "app/helm-values.yaml" names a pattern).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from dapper.backends.gitops.treesource import FileSource, SourceError, read_text, walk

EXTENSIONS = (
    ".md", ".yaml", ".yml", ".env", ".txt", ".json", ".json5", ".toml", ".py", ".sh", ".tcss",
)  # fmt: skip
URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
REF_RE = re.compile(r"(?<![\w/$~{}<>.:@-])((?:\.{1,2}/)*[\w.@-]+(?:/[\w.@-]+)+)")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
MARKDOWN_DIRS = ("", "kubernetes", "docs")


def _comment(line: str) -> str:
    """The comment part of a YAML line: after a `#` that starts it or follows a blank."""
    m = re.search(r"(?:^|\s)#(.*)$", line)
    return m.group(1) if m else ""


def _refs(text: str) -> Iterator[str]:
    for m in REF_RE.finditer(URL_RE.sub(" ", text)):
        ref = m.group(1).rstrip(".")
        if ref.endswith(EXTENSIONS):
            yield ref


def _markdown_lines(text: str) -> Iterator[tuple[int, str]]:
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE_RE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def _yaml_comment_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        comment = _comment(line)
        if comment:
            yield number, comment


class _Resolver:
    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.tree = list(walk(source, "kubernetes")) if source.is_dir("kubernetes") else []

    def exists(self, path: str) -> bool:
        return self.source.is_file(path) or self.source.is_dir(path)

    def resolves(self, file: str, ref: str) -> bool:
        bases = ["kubernetes"]
        here = posixpath.dirname(file)
        while True:
            bases.append(here)
            if not here:
                break
            here = posixpath.dirname(here)
        for base in bases:
            candidate = posixpath.normpath(posixpath.join(base, ref))
            if not candidate.startswith("..") and self.exists(candidate):
                return True
        tail = "/" + posixpath.normpath(ref).lstrip("./")
        return any(p.endswith(tail) for p in self.tree)


def _files(source: FileSource) -> Iterator[tuple[str, str]]:
    """(path, kind) of every file whose comments or prose are checked."""
    if source.is_file(".sops.yaml"):
        yield ".sops.yaml", "yaml"
    for top in MARKDOWN_DIRS:
        if top and not source.is_dir(top):
            continue
        names = source.listdir(top) if not top else []
        paths = [n for n in names if source.is_file(n)] if not top else list(walk(source, top))
        for path in paths:
            if path.endswith(".md"):
                yield path, "markdown"
            elif top == "kubernetes" and path.endswith((".yaml", ".yml")):
                yield path, "yaml"


def missing_file_refs(source: FileSource) -> Iterator[tuple[str, int, str]]:
    """(file, line, reason) for each local file reference that does not exist."""
    resolver = _Resolver(source)
    for path, kind in _files(source):
        try:
            text = read_text(source, path)
        except (SourceError, OSError):
            continue
        lines = _markdown_lines(text) if kind == "markdown" else _yaml_comment_lines(text)
        where = "prose" if kind == "markdown" else "comment"
        for number, line in lines:
            for ref in _refs(line):
                if not resolver.resolves(path, ref):
                    yield path, number, f"{where} refers to {ref}, which does not exist"
