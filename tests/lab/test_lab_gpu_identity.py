"""The GPU node's GPUs are the ones its VM holds: a VM without passthrough offers none."""

from __future__ import annotations

from dapper.lab.kinds import by_kind
from dapper.lab.world import Timings, World

from tests.waiting import eventually


def gpu_capacity(world: World, node: str) -> str:
    with world.lock:
        obj = world.store.find(by_kind("", "Node"), "", node) or {}
    return str(((obj.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu", ""))


def test_gpus_follow_the_vms_passthrough() -> None:
    world = World(timings=Timings(task=0.02, boot=0.05, clone=0.02, node_grace=0.05))
    try:
        assert gpu_capacity(world, "talos-node-gpu-1") == "16"
        world.vm_stop(103)
        with world.lock:
            world.vm(103).hostpci.clear()  # root took the GPUs off the VM
        world.vm_start(103)
        eventually(lambda: gpu_capacity(world, "talos-node-gpu-1") == "0", timeout=5)
        assert world.node_ready("talos-node-gpu-1")
        with world.lock:
            labels = world.kube.node_labels("talos-node-gpu-1")
        assert labels.get("node-role.home.arpa/gpu") == "p100"  # the config's label stays
    finally:
        world.close()
