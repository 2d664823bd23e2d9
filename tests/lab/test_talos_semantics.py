"""The Talos twin behaves as Talos v1.11 does (issue 18): config validation, apply modes,
maintenance-mode restrictions, etcd membership, Bootstrap and Reset, each through the
project's Talos client over real mTLS gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.talos import TalosClient
from dapper.backends.errors import BackendError
from dapper.lab.kinds import by_kind
from dapper.lab.pki import CertificateAuthority, Pki
from dapper.lab.talos_server import TalosLabServer
from dapper.lab.world import Timings, World

from tests.waiting import eventually_async

CP1, CP2, CP3, WORKER = "10.100.0.50", "10.100.0.51", "10.100.0.52", "10.100.0.54"
WORKER_VMID = 104


@pytest.fixture
def world() -> Iterator[World]:
    w = World(timings=Timings(boot=0.05, task=0.05, shutdown=0.02, clone=0.02))
    yield w
    w.close()


@pytest.fixture
def server(world: World) -> Iterator[TalosLabServer]:
    srv = TalosLabServer(world, Pki())
    srv.start()
    yield srv
    srv.stop()


def _client(srv: TalosLabServer, tmp_path: Path) -> TalosClient:
    path = tmp_path / "talosconfig"
    path.write_text(srv.talosconfig("os:admin"))
    path.chmod(0o600)
    return TalosClient.from_config(
        str(path), maintenance_endpoint=srv.maintenance_endpoint, timeout=3.0
    )


async def _refused(call, code: str, text: str) -> BackendError:
    with pytest.raises(BackendError) as err:
        await call
    assert err.value.code == code, err.value.reason
    assert text in err.value.reason, err.value.reason
    return err.value


async def _maintenance(world: World, node: str) -> None:
    m = world.machine(node)
    await eventually_async(
        lambda: m.maintenance and world.reachable(m), message="maintenance mode", timeout=3.0
    )


async def _running(world: World, node: str) -> None:
    m = world.machine(node)
    await eventually_async(
        lambda: not m.maintenance and world.reachable(m), message="configured", timeout=3.0
    )


# -- 1. validation -----------------------------------------------------------------------

BAD_CONFIGS = [
    (b"machine: [unclosed\n", "decode error: yaml: "),
    (b"", "config not found"),
    (b"foo: bar\n", "missing kind"),
    (
        b"version: v1alpha1\nmachine:\n  type: worker\n  bogus: 1\ncluster: {}\n",
        "unknown keys found during decoding: machine: bogus: 1",
    ),
]
INVALID_CONFIGS = [
    (
        b"version: v1alpha1\nmachine:\n  type: worker\n"
        b"cluster:\n  controlPlane:\n    endpoint: https://10.100.0.40:6443\n",
        "issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)",
    ),
    (
        b"version: v1alpha1\nmachine:\n  type: worker\n  ca:\n    crt: eA==\ncluster: {}\n",
        "cluster controlplane endpoint is required",
    ),
    (
        b"version: v1alpha1\nmachine:\n  type: gpu\n  ca:\n    crt: eA==\n"
        b"cluster:\n  controlPlane:\n    endpoint: https://10.100.0.40:6443\n",
        'unknown machine type "gpu"',
    ),
    (
        b"version: v1alpha1\nmachine:\n  type: controlplane\n  ca:\n    crt: eA==\n"
        b"cluster:\n  controlPlane:\n    endpoint: https://10.100.0.40:6443\n",
        "issuing CA key is required for controlplane nodes (.machine.ca.key)",
    ),
]


async def test_configured_machine_refuses_configs_talos_refuses(server, world, tmp_path) -> None:
    before = world.machine(WORKER).config
    async with _client(server, tmp_path) as c:
        for data, text in BAD_CONFIGS + INVALID_CONFIGS:
            for dry_run in (True, False):  # a dry run validates first
                await _refused(
                    c.apply_configuration(WORKER, data, dry_run=dry_run), "INVALID_ARGUMENT", text
                )
    assert world.machine(WORKER).config == before and world.writes == []


async def test_maintenance_refuses_configs_with_its_own_codes(server, world, tmp_path) -> None:
    world.talos_reset(WORKER)
    await _maintenance(world, WORKER)
    async with _client(server, tmp_path) as c:
        for data, text in BAD_CONFIGS:  # a config that does not load: a plain error
            await _refused(
                c.apply_configuration(WORKER, data, maintenance=True),
                "UNKNOWN",
                f"failed to parse config: {text}",
            )
        for data, text in INVALID_CONFIGS:
            await _refused(
                c.apply_configuration(WORKER, data, maintenance=True, dry_run=True),
                "INVALID_ARGUMENT",
                f"configuration validation failed: 1 error occurred: {text}",
            )
        good = server.machine_config("talos-node-large-9")
        dry = await c.apply_configuration(WORKER, good, maintenance=True, dry_run=True)
        assert dry.details.startswith("Dry run summary:\nNode is running in maintenance mode")
    assert world.machine(WORKER).maintenance


async def test_config_of_another_cluster_is_accepted_but_never_joins(
    server, world, tmp_path
) -> None:
    world.talos_reset(WORKER)
    await _maintenance(world, WORKER)
    stranger = CertificateAuthority("other-talos", ed25519_keys=True)
    foreign = server.machine_config(
        "talos-node-large-9", os_ca_pem=stranger.cert_pem.decode(), token="abcdef.0123456789abcdef"
    )
    async with _client(server, tmp_path) as c:
        await c.apply_configuration(WORKER, foreign, maintenance=True)
        await _running(world, WORKER)
        await _refused(c.hostname(WORKER), "UNAVAILABLE", "certificate signed by unknown authority")
        m = await c.machine(WORKER)
    assert m.stage == "unreachable"
    assert not world.kube.node_exists("talos-node-large-9")
    assert all(e.ip != WORKER for e in world.etcd.values())


# -- 2. apply modes ----------------------------------------------------------------------


def _with(server: TalosLabServer, extra: str, hostname: str = "talos-node-large-1") -> bytes:
    """The worker's config plus `extra` lines under `machine:`."""
    base = server.machine_config(hostname).decode()
    return base.replace("machine:\n", "machine:\n" + extra, 1).encode()


async def _configure(c: TalosClient, world: World, server: TalosLabServer) -> None:
    """Give the seeded worker a full config (its token changes: that takes a reboot)."""
    m = world.machine(WORKER)
    result = await c.apply_configuration(WORKER, _with(server, ""), mode="auto")
    assert result.mode == "reboot"
    await eventually_async(lambda: world.reachable(m), message="reboot", timeout=3.0)


LIVE = "  nodeLabels:\n    lab: live\n"  # applies without a reboot
REBOOTING = "  env:\n    LAB: reboot\n"  # needs one


async def test_apply_modes_on_a_configured_machine(server, world, tmp_path) -> None:
    m = world.machine(WORKER)
    async with _client(server, tmp_path) as c:
        await _configure(c, world, server)
        dry = await c.apply_configuration(WORKER, _with(server, REBOOTING), dry_run=True)
        assert dry.mode == "reboot" and dry.details.startswith(
            "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run)."
        )
        assert b"LAB" not in (m.config or b"")
        live = await c.apply_configuration(WORKER, _with(server, LIVE), mode="auto")
        assert (live.mode, live.details) == ("no-reboot", "Applied configuration without a reboot")
        assert world.reachable(m) and b"lab: live" in (m.config or b"")
        for mode in ("no-reboot", "try"):
            await _refused(
                c.apply_configuration(WORKER, _with(server, REBOOTING), mode=mode),
                "INVALID_ARGUMENT",
                "this config change can't be applied in immediate mode",
            )
        staged = await c.apply_configuration(WORKER, _with(server, REBOOTING), mode="staged")
        assert staged.details == "Staged configuration to be applied after the next reboot"
        assert b"LAB" not in (m.config or b"") and world.reachable(m)
        await c.reboot(WORKER)
        await eventually_async(lambda: world.reachable(m), message="reboot", timeout=3.0)
        assert b"LAB: reboot" in (m.config or b"")
        auto = await c.apply_configuration(WORKER, _with(server, LIVE), mode="auto")
        assert auto.mode == "reboot"
        assert auto.details.startswith(
            "Applied configuration with a reboot: this config change can't be applied"
        )
        assert not world.reachable(m)  # rebooting
        await eventually_async(lambda: world.reachable(m), message="reboot", timeout=3.0)
        assert b"LAB" not in (m.config or b"")


async def test_try_reverts_after_its_timeout(server, world, tmp_path) -> None:
    m = world.machine(WORKER)
    async with _client(server, tmp_path) as c:
        await _configure(c, world, server)
        tried = await c.apply_configuration(
            WORKER, _with(server, LIVE), mode="try", try_timeout=0.3
        )
        assert tried.mode == "try"
        assert "will be automatically reverted back in" in tried.details
        assert b"lab: live" in (m.config or b"")
        await eventually_async(
            lambda: b"lab: live" not in (m.config or b""), message="the revert", timeout=3.0
        )


async def test_maintenance_takes_only_rebooting_modes(server, world, tmp_path) -> None:
    world.talos_reset(WORKER)
    await _maintenance(world, WORKER)
    config = server.machine_config("talos-node-large-9")
    async with _client(server, tmp_path) as c:
        for mode in ("no-reboot", "staged"):
            await _refused(
                c.apply_configuration(WORKER, config, mode=mode, maintenance=True),
                "UNIMPLEMENTED",
                f"apply configuration --mode='{mode}' is not supported in maintenance mode",
            )
        assert world.machine(WORKER).maintenance
        await c.apply_configuration(WORKER, config, mode="auto", maintenance=True)
        await _running(world, WORKER)
        assert await c.hostname(WORKER) == "talos-node-large-9"


# -- 4. etcd -----------------------------------------------------------------------------


def _id(world: World, hostname: str) -> int:
    return next(e.id for e in world.etcd.values() if e.hostname == hostname)


async def test_removal_that_would_lose_quorum_is_refused(server, world, tmp_path) -> None:
    world.inject("etcd-unhealthy:talos-control-3")
    async with _client(server, tmp_path) as c:
        healthy = _id(world, "talos-control-2")
        await _refused(
            c.etcd_remove_member(CP1, healthy), "UNKNOWN", "etcdserver: unhealthy cluster"
        )
        await _refused(c.etcd_leave_cluster(CP2), "UNKNOWN", "failed to leave cluster")
        assert len(await c.etcd_members(CP1)) == 3
        await c.etcd_remove_member(CP1, _id(world, "talos-control-3"))  # a down member may go
        assert {e.hostname for e in await c.etcd_members(CP1)} == {
            "talos-control-1",
            "talos-control-2",
        }


async def test_leave_stops_etcd_and_a_reboot_rejoins_as_learner(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await c.etcd_leave_cluster(CP3)
        services = {s.id: s.state for s in await c.services(CP3)}
        assert services["etcd"] == "Finished" and not world.machine(CP3).etcd_data
        assert len(await c.etcd_members(CP1)) == 2
        await c.reboot(CP3)
        await eventually_async(
            lambda: any(e.hostname == "talos-control-3" for e in world.etcd.values()),
            message="the rejoin",
            timeout=3.0,
        )
        joined = {e.hostname: e for e in await c.etcd_members(CP1)}["talos-control-3"]
        assert joined.is_learner
        await eventually_async(
            lambda: not world.etcd[joined.id].is_learner, message="promotion", timeout=3.0
        )


async def test_removed_member_stays_out_after_a_reboot(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await c.etcd_remove_member(CP1, _id(world, "talos-control-3"))
        await c.reboot(CP3)
        m = world.machine(CP3)
        await eventually_async(lambda: world.reachable(m), message="reboot", timeout=3.0)
        assert {s.id: s.state for s in await c.services(CP3)}["etcd"] == "Failed"
        assert "talos-control-3" not in {e.hostname for e in await c.etcd_members(CP1)}


async def test_last_member_cannot_leave(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await c.etcd_remove_member(CP1, _id(world, "talos-control-3"))
        await c.etcd_remove_member(CP1, _id(world, "talos-control-2"))
        await _refused(
            c.etcd_leave_cluster(CP1),
            "UNKNOWN",
            "re-configuration failed due to not enough started members",
        )
        await _refused(
            c.etcd_forfeit_leadership(CP1), "UNKNOWN", "cannot forfeit leadership, only one member"
        )
        assert [e.hostname for e in await c.etcd_members(CP1)] == ["talos-control-1"]


async def test_forfeit_leadership(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        assert (await c.etcd_status(CP1)).is_leader
        assert await c.etcd_forfeit_leadership(CP2) == ""  # not the leader: nothing to do
        new = await c.etcd_forfeit_leadership(CP1)
        assert new in {"talos-control-2", "talos-control-3"}
        assert not (await c.etcd_status(CP1)).is_leader
        leaders = [n for n in (CP2, CP3) if (await c.etcd_status(n)).is_leader]
        assert [world.machine(n).hostname for n in leaders] == [new]
        await _refused(
            c.etcd_forfeit_leadership(WORKER),
            "UNIMPLEMENTED",
            "etcd forfeit leadership is only available on control plane nodes",
        )


# -- 5. bootstrap ------------------------------------------------------------------------


async def test_bootstrap_preconditions(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await _refused(
            c.bootstrap(WORKER),
            "FAILED_PRECONDITION",
            "bootstrap can only be performed on a control plane node",
        )
        await _refused(c.bootstrap(CP1), "ALREADY_EXISTS", "etcd data directory is not empty")


async def test_bootstrap_after_leaving_starts_a_second_cluster(server, world, tmp_path) -> None:
    """Talos guards Bootstrap by the node's own etcd data only: a control plane that left
    etcd is bootstrapped into a cluster of its own. Runbooks must check etcd first."""
    async with _client(server, tmp_path) as c:
        await c.etcd_leave_cluster(CP3)
        await c.bootstrap(CP3)
        assert [e.hostname for e in await c.etcd_members(CP3)] == ["talos-control-3"]
        assert "talos-control-3" not in {e.hostname for e in await c.etcd_members(CP1)}
        assert len(await c.etcd_members(CP1)) == 2


def _cordoned(world: World, name: str) -> bool:
    node = world.store.find(by_kind("", "Node"), "", name)
    return bool(node and node.get("spec", {}).get("unschedulable"))


# -- 6. reset ----------------------------------------------------------------------------


async def test_graceful_reset_cordons_and_drains_but_keeps_the_node(
    server, world, tmp_path
) -> None:
    async with _client(server, tmp_path) as c:
        await c.reset(WORKER, graceful=True, reboot=True)
        assert world.reachable(world.machine(WORKER))  # answered before the reset ran
        await _maintenance(world, WORKER)
    assert world.kube.node_exists("talos-node-large-1")  # the Node is still there
    assert _cordoned(world, "talos-node-large-1")
    assert not world.kube.node_ready("talos-node-large-1")
    assert not [
        p
        for p in world.kube.pods(node="talos-node-large-1")
        if not p["metadata"].get("ownerReferences")
        or p["metadata"]["ownerReferences"][0]["kind"] != "DaemonSet"
    ]


async def test_reset_without_reboot_powers_off(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await c.reset(WORKER, graceful=False, reboot=False)
        await eventually_async(
            lambda: world.vms[WORKER_VMID].status == "stopped", message="power off", timeout=3.0
        )
        m = await c.machine(WORKER)
    assert m.stage == "unreachable"


async def test_wiping_only_ephemeral_keeps_the_config(server, world, tmp_path) -> None:
    old = _id(world, "talos-control-3")
    async with _client(server, tmp_path) as c:
        await c.reset(CP3, graceful=False, reboot=True, partitions=[("EPHEMERAL", True)])
        m = world.machine(CP3)
        await eventually_async(
            lambda: not world.reachable(m), message="the reset to run", timeout=3.0
        )
        await _running(world, CP3)
        assert await c.hostname(CP3) == "talos-control-3"
        # etcd data was on EPHEMERAL: the stale member of its name goes, a learner joins
        await eventually_async(
            lambda: any(e.hostname == "talos-control-3" for e in world.etcd.values()),
            message="the rejoin",
            timeout=3.0,
        )
    assert old not in world.etcd


async def test_invalid_wipe_combinations_are_refused(server, world, tmp_path) -> None:
    async with _client(server, tmp_path) as c:
        await _refused(
            c.reset(WORKER, wipe="system-disk", user_disks=["/dev/sda"]),
            "UNKNOWN",
            "wipe mode SYSTEM_DISK doesn't support UserDisksToWipe parameter",
        )
        await _refused(
            c.reset(WORKER, wipe="user-disks", partitions=[("EPHEMERAL", True)]),
            "UNKNOWN",
            "wipe mode USER_DISKS doesn't support SystemPartitionsToWipe parameter",
        )
        await _refused(
            c.reset(WORKER, partitions=[("DATA", True)]),
            "UNKNOWN",
            'failed to get volume status with label "DATA"',
        )
        await _refused(
            c.reset(WORKER, wipe="user-disks", user_disks=["/dev/vda"]),
            "UNKNOWN",
            "reset user disk failed: device /dev/vda is the system disk",
        )
    assert world.writes == [] and not world.machine(WORKER).maintenance


async def test_before_bootstrap_etcd_waits_and_no_node_registers(server, world, tmp_path) -> None:
    """A cluster before Bootstrap. The lab has no bare stage yet (issue 13), so the test
    takes the seeded cluster's etcd away (no data on any control plane, no Nodes) and
    reboots every machine: that is the state a fresh cluster's machines boot into."""
    with world.lock:
        world.etcd.clear()
        for m in world.machines.values():
            m.etcd_data = False
            world.kube.delete_node(m.hostname)
    async with _client(server, tmp_path) as c:
        for ip in list(world.machines):
            await c.reboot(ip)
        for ip in list(world.machines):
            m = world.machine(ip)
            await eventually_async(lambda m=m: world.reachable(m), message="boot", timeout=3.0)
        assert {s.id: s.state for s in await c.services(CP2)}["etcd"] == "Preparing"
        await _refused(c.etcd_status(CP1), "UNKNOWN", "connection refused")
        assert not any(world.kube.node_exists(m.hostname) for m in world.machines.values())
        await c.bootstrap(CP1)
        assert [e.hostname for e in await c.etcd_members(CP1)] == ["talos-control-1"]
        assert world.kube.node_exists("talos-control-1")
        await eventually_async(  # the other kubelets' retries succeed now
            lambda: world.kube.node_exists("talos-node-large-1"), message="Node", timeout=3.0
        )
        await _refused(c.bootstrap(CP1), "ALREADY_EXISTS", "etcd data directory is not empty")
        # the waiting control planes join as learners, then are promoted
        await eventually_async(
            lambda: len(world.etcd) == 3 and not any(e.is_learner for e in world.etcd.values()),
            message="the other control planes to join",
            timeout=3.0,
        )


async def test_graceful_reset_that_would_lose_quorum_stops_after_the_drain(
    server, world, tmp_path
) -> None:
    world.inject("etcd-unhealthy:talos-control-3")
    async with _client(server, tmp_path) as c:
        await c.reset(CP2, graceful=True, reboot=True)  # accepted: the checks come later
        await eventually_async(
            lambda: _cordoned(world, "talos-control-2"), message="the drain", timeout=3.0
        )
        await asyncio.sleep(0.2)
        m = world.machine(CP2)
        assert world.reachable(m) and not m.maintenance  # the leave was refused: no reset
        assert "talos-control-2" in {e.hostname for e in await c.etcd_members(CP1)}
