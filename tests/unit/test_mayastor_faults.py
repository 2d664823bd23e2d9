"""volume_faults: which pool a volume's trouble is shown on, and how it reads."""

from __future__ import annotations

from dapper.backends.snapshot.mayastor_source import volume_faults


def vol(uuid: str, status: str, *replicas: tuple[str, str, str, int | None]) -> dict:
    topology = {}
    for i, (pool, node, state, progress) in enumerate(replicas):
        entry: dict = {"pool": pool, "node": node, "state": state}
        if progress is not None:
            entry["rebuild-progress"] = progress
        topology[f"r{i}"] = entry
    return {
        "spec": {"uuid": uuid},
        "state": {"uuid": uuid, "status": status, "replica_topology": topology},
    }


def test_faulted_is_an_error_of_the_lost_replicas_pool_named_by_its_claim() -> None:
    faults = volume_faults(
        [vol("u1", "Faulted", ("p1", "n1", "Unknown", None))], {"u1": "media/plex"}
    )
    assert [(f.severity, f.pane, f.subject) for f in faults] == [("error", "pools", "p1")]
    assert faults[0].message.startswith("media/plex Faulted")


def test_degraded_is_a_warning_naming_the_healthy_copy_and_the_rebuild() -> None:
    v = vol(
        "u2",
        "Degraded",
        ("p1", "n1", "Unknown", None),
        ("p2", "n2", "Online", None),
        ("p3", "n3", "Degraded", 40),
    )
    (fault,) = volume_faults([v], {})
    assert (fault.severity, fault.subject) == ("warning", "p1")
    assert "healthy on n2" in fault.message and "rebuilding on n3 (40%)" in fault.message
    assert fault.message.startswith("volume u2 Degraded")


def test_online_volumes_are_no_faults() -> None:
    assert volume_faults([vol("u3", "Online", ("p1", "n1", "Online", None))], {}) == []
