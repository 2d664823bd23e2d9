"""The package layout: every package folder is installed under dapper.*, nothing generic."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPED = {
    "tui": "dapper.tui",
    "backends": "dapper.backends",
    "actions": "dapper.actions",
    "lab": "dapper.lab",
    "cli": "dapper.cli",
}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert meta["package-dir"] == {v: k for k, v in MAPPED.items()}
    listed = set(meta["packages"])
    found = set()
    for folder, package in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]))
    assert found == listed, (
        f"pyproject packages differ: missing {found - listed}, extra {listed - found}"
    )


def test_console_script_and_namespace_import() -> None:
    import dapper.backends.model
    import dapper.cli.main

    assert dapper.backends.model.ClusterSnapshot
    assert callable(dapper.cli.main.main)


def test_every_dependency_has_an_upper_bound() -> None:
    """A new major version of a library is a decision, not something an install picks."""
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += [s for s in extra if not s.startswith("dapper-tui")]
    unbounded = [s for s in specs if not re.search(r"(<|==)", s)]
    assert unbounded == []


def test_constraints_lock_every_dependency() -> None:
    """CI installs with -c constraints.txt: every dependency must be locked there (run
    scripts/lock-dependencies after changing pyproject.toml)."""
    import re

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += [s for s in extra if not s.startswith("dapper-tui")]
    locked = {
        line.split("==")[0].lower().replace("_", "-").replace(".", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    names = {
        re.split(r"[<>=!\[ ]", s)[0].lower().replace("_", "-").replace(".", "-") for s in specs
    }
    assert names - locked == set()
