"""The lab presents the /dev/disk/by-id links the tree's DiskPools name, and only those."""

from __future__ import annotations

from pathlib import Path

from dapper.lab import talos_facts
from dapper.lab.flux_apply import Applier
from dapper.lab.flux_workloads import Workloads
from dapper.lab.kinds import by_kind
from dapper.lab.world import World
from ruamel.yaml import YAML

from tests.waiting import eventually

POOLS = Path(__file__).resolve().parents[2] / "kubernetes/apps/openebs-system/openebs/pools"
KS = {"metadata": {"namespace": "openebs-system", "name": "openebs-diskpools"}, "spec": {}}


def _tree_pools() -> list[dict]:
    return [d for d in YAML(typ="safe").load_all((POOLS / "diskpools.yaml").read_text()) if d]


def test_talos_reports_the_wwn_each_tree_pool_names(world: World) -> None:
    by_host = {m.hostname: m for m in world.machines.values()}
    for pool in _tree_pools():
        (disk,) = pool["spec"]["disks"]
        assert disk.startswith("/dev/disk/by-id/wwn-0x")
        reported = talos_facts.disks(by_host[pool["spec"]["node"]])
        wwids = {d.wwid for d in reported.disks if d.wwid}
        assert wwids == {"naa." + disk.removeprefix("/dev/disk/by-id/wwn-0x")}


def test_a_pool_on_a_disk_the_node_lacks_is_not_created(world: World) -> None:
    applier = Applier(world, Workloads(world))
    good, bad = _tree_pools()[:2]
    bad["spec"]["disks"] = ["/dev/disk/by-id/wwn-0x5002538000000000"]
    for pool in (good, bad):
        pool["metadata"]["namespace"] = "openebs-system"
    applier.apply(KS, [good, bad])
    rt = by_kind("openebs.io", "DiskPool")
    live = {p["metadata"]["name"]: p["status"] for p in world.store.list(rt)[0]}
    assert live[good["metadata"]["name"]]["pool_status"] == "Online"
    assert live[bad["metadata"]["name"]]["pool_status"] == "Unknown"
    assert live[bad["metadata"]["name"]]["cr_state"] == "Creating"


def test_a_pool_is_unknown_while_its_node_is_down_not_only_once_the_node_goes(
    world: World,
) -> None:
    applier = Applier(world, Workloads(world))
    pool = _tree_pools()[0]
    pool["metadata"]["namespace"] = "openebs-system"
    applier.apply(KS, [pool])
    rt = by_kind("openebs.io", "DiskPool")
    name, node = pool["metadata"]["name"], pool["spec"]["node"]

    def state() -> str:
        return world.store.get(rt, "openebs-system", name)["status"]["pool_status"]

    assert state() == "Online"
    vmid = world.machine(node).vmid
    world.vm_stop(vmid)
    eventually(lambda: world.vm(vmid).status == "stopped", timeout=5)
    assert world.node_ready(node)  # Kubernetes has not noticed yet (grace period)
    assert state() == "Unknown"  # Mayastor's io-engine went with the machine
    world.vm_start(vmid)
    eventually(lambda: state() == "Online", timeout=5, message="the pool back Online")
