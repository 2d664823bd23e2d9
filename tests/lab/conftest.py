"""Fixtures for tests over the lab's sockets: a World behind its PVE server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.lab.pki import Pki
from dapper.lab.pve_server import PveServer
from dapper.lab.world import Timings, World

# -- the Proxmox tests' lab: a World behind its PVE server (modules may override these) --


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def world() -> Iterator[World]:
    w = World(timings=Timings(task=0.05, boot=0.05, shutdown=0.02, clone=0.05))
    yield w
    w.close()


@pytest.fixture
def server(world: World, pki: Pki) -> Iterator[PveServer]:
    with PveServer(world, pki) as srv:
        yield srv


@pytest.fixture
def ca_file(tmp_path: Path, pki: Pki) -> str:
    path = tmp_path / "lab-ca.pem"
    path.write_bytes(pki.https_ca.cert_pem)
    return str(path)
