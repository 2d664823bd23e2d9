"""Shared fixtures: every test runs with its own XDG dirs, so no user config or log leaks in."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    base = tmp_path_factory.mktemp("xdg")
    for kind in ("CONFIG", "STATE", "CACHE"):
        monkeypatch.setenv(f"XDG_{kind}_HOME", str(base / kind.lower()))
    for var in ("DAPPER_TUI_CONFIG", "DAPPER_TUI_READ_ONLY", "SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
