"""Shared inputs of the talosgen tests: the real tree (read only), its key, private copies.

The expectations are read from talconfig.yaml, talenv.yaml and the patch files with a plain
YAML loader here, independently of the generator's own reading.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dapper.backends.sops.file import decrypt_file
from dapper.backends.sops.keys import read_identity_file
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
TALOS = REPO / "kubernetes" / "bootstrap" / "talos"
LAB_KEY = REPO / "lab" / "keys" / "lab-only.agekey.txt"


def identities() -> list[Any]:
    return read_identity_file(LAB_KEY)


def load_yaml(data: bytes | str) -> Any:
    docs = list(YAML(typ="safe").load_all(data))
    assert len(docs) == 1, "one document expected"
    return docs[0]


def talenv() -> dict[str, str]:
    return load_yaml((TALOS / "talenv.yaml").read_text())


def talconfig() -> dict[str, Any]:
    text = (TALOS / "talconfig.yaml").read_text()
    for name, value in talenv().items():
        text = text.replace("${" + name + "}", str(value))
    return load_yaml(text)


def patch(relative: str) -> Any:
    return load_yaml((TALOS / relative).read_text())


def bundle_document() -> dict[str, Any]:
    return decrypt_file(TALOS / "talsecret.sops.yaml", identities()).documents[0]


def copy_repo(tmp_path: Path) -> Path:
    """A private copy of kubernetes/bootstrap/talos that a test may break."""
    root = tmp_path / "repo"
    shutil.copytree(TALOS, root / "kubernetes" / "bootstrap" / "talos")
    return root
