"""The console's layer contract lists every backends module except the public ones, so a
new backends module is private to the console until someone decides otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# safe_text: the one place any text is made safe for a terminal, the console included
PUBLIC = {"model", "config", "errors", "protocols", "safe_text"}


def test_the_console_contract_forbids_every_non_public_backends_module() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["source_modules"] == ["dapper.tui"])
    children = {
        p.stem if p.is_file() else p.name
        for p in (REPO / "backends").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    forbidden = {m.removeprefix("dapper.backends.") for m in contract["forbidden_modules"]}
    assert forbidden == children - PUBLIC
