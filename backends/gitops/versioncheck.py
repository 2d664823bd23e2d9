"""The Talos and Kubernetes versions are written for two readers; they must agree.

talhelper reads `kubernetes/bootstrap/talos/talenv.yaml` (YAML); the cluster reads
`kubernetes/components/common/substitutions/versions.env` (dotenv, ConfigMap `versions`,
used by the system-upgrade-controller Plans). A Renovate pull request bumps both; this
check catches a hand edit that bumps only one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

TALENV = "kubernetes/bootstrap/talos/talenv.yaml"
VERSIONS_ENV = "kubernetes/components/common/substitutions/versions.env"
KEYS = ("TALOS_VERSION", "KUBERNETES_VERSION")


def _values(text: str, sep: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    pattern = re.compile(rf"^\s*([A-Z_]+)\s*{sep}\s*\"?([^\"\s#]+)\"?")
    for number, line in enumerate(text.splitlines(), start=1):
        m = pattern.match(line)
        if m:
            out[m.group(1)] = (m.group(2), number)
    return out


def version_mismatches(root: Path) -> Iterator[tuple[str, int, str]]:
    """(file, line, reason) for each version that differs or is missing."""
    talenv_path, env_path = root / TALENV, root / VERSIONS_ENV
    if not talenv_path.is_file() or not env_path.is_file():
        return
    talenv = _values(talenv_path.read_text(), ":")
    env = _values(env_path.read_text(), "=")
    for key in KEYS:
        a, b = talenv.get(key), env.get(key)
        if a is None:
            yield TALENV, 1, f"{key} is not set (talhelper needs it)"
        elif b is None:
            yield VERSIONS_ENV, 1, f"{key} is not set (the upgrade Plans need it)"
        elif a[0] != b[0]:
            yield TALENV, a[1], f"{key} {a[0]} differs from {VERSIONS_ENV}:{b[1]} ({b[0]})"
