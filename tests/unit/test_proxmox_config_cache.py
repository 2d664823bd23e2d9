"""VM configs read in one sweep do not all expire in the same later sweep: at 500 VMs
one TTL for all made each minute's sweep read all 500 again."""

from __future__ import annotations

from dapper.backends.config import load_config
from dapper.backends.snapshot import proxmox_source
from dapper.backends.snapshot.proxmox_source import CONFIG_TTL, ProxmoxSource
from dapper.backends.snapshot.sources import SourceContext

VMIDS = range(100, 600)


def test_configs_expire_spread_over_a_minute(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(proxmox_source.time, "monotonic", lambda: clock[0])
    source = ProxmoxSource(
        SourceContext(config=load_config(None, read_only=True), timeout=5.0, latest=lambda _: None)
    )
    reads: list[int] = []

    def sweep() -> None:
        for vmid in VMIDS:
            row = {"vmid": vmid, "status": "running", "uptime": 1000 + int(clock[0])}
            source._config_of(False, row, lambda vmid=vmid: reads.append(vmid) or {"name": "x"})

    sweep()
    assert len(reads) == len(VMIDS)  # the first sweep reads every config
    clock[0] = CONFIG_TTL - 5
    reads.clear()
    sweep()
    assert reads == []  # none before the TTL
    clock[0] = CONFIG_TTL + 5
    reads.clear()
    sweep()
    early = len(reads)
    assert 0 < early <= 60  # a few past the TTL, not all 500 at once
    clock[0] = 2 * CONFIG_TTL + 1
    reads.clear()
    sweep()  # by twice the TTL, every config read at 0 has been read again, once
    assert len(reads) + early == len(VMIDS)
