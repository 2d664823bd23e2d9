"""Fixtures for the unit tests: the synthetic Flux tree, written once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyrage
import pytest

from tests.unit.synthetic_tree import write_tree


@pytest.fixture(scope="session")
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux-base")
    write_tree(root, str(pyrage.x25519.Identity.generate().to_public()))
    return root


@pytest.fixture
def tree_dir(base_tree: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic tree that a test may break."""
    dest = tmp_path / "repo"
    shutil.copytree(base_tree, dest)
    return dest
