"""Fixtures for the console's tests: the default lab, Flux reconciled, shared by a module.

Tests that need a lab with faults or other sizes start their own with
`tests.console.tui_lab.running_lab(...)`; the app is built with `make_app(lab, ...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.tui_lab import running_lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    """The default lab (7 nodes, the tree reconciled), one per test module."""
    with running_lab() as running:
        yield running
