"""`dapper-tui check` works after README's first command (no dev extra): without the core
Kubernetes schemas it says what it skipped and how to add them, and still checks the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The plain install has no kubernetes-validate: make its import fail as it would there.
WITHOUT_SCHEMAS = """
import sys
sys.modules["kubernetes_validate"] = None
sys.modules["kubernetes_validate.utils"] = None
from dapper.cli.main import main
sys.exit(main(["check"]))
"""


def test_check_without_the_core_schemas() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SCHEMAS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out
    assert "warning: core Kubernetes kinds were not checked" in out
    assert "pip install 'dapper-tui[check]'" in out
    assert out.rstrip().endswith("Flux Kustomizations, 0 problems, 1 warning")
