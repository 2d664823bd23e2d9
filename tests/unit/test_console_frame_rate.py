"""The console asks Textual for 120 frames a second unless the operator set TEXTUAL_FPS.

Textual reads the rate once, when it is imported, so each case runs in its own process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
from dapper.backends.config import load_config
from dapper.cli.console_cmd import make_app

async def connect():
    raise AssertionError("not run")

make_app(load_config(None, read_only=True), connect)
import textual.constants
print(textual.constants.MAX_FPS)
"""


@pytest.mark.parametrize(("given", "used"), [(None, "120"), ("30", "30")])
def test_frame_rate(given: str | None, used: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    if given is not None:
        env["TEXTUAL_FPS"] = given
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-1] == used
