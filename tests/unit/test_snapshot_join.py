"""join() on small hand-made inputs: which node, machine, VM and GPU belong together.

The lab tests reach join only through the whole collector; these pin down its matching
rules (InternalIP, hostname, VM name, NIC MAC, PCI address forms) and its GPU arithmetic
with inputs small enough to read at a glance.
"""

from __future__ import annotations

from dapper.backends.model import Node, PodRef, TalosMachine, Vm, VmDevice
from dapper.backends.snapshot.join import (
    HostPci,
    KubeData,
    ProxmoxData,
    TalosData,
    join,
    vms_without_node,
)

P100 = "GP100GL [Tesla P100 PCIe 16GB]"


def snapshot(
    *,
    nodes: tuple[Node, ...] = (),
    pods: tuple[PodRef, ...] = (),
    vms: tuple[Vm, ...] = (),
    pci: tuple[HostPci, ...] = (),
    machines: tuple[TalosMachine, ...] = (),
):
    return join(
        cluster="test",
        mode="LAB",
        read_only=True,
        taken_at=1000.0,
        kube=KubeData(nodes=nodes, pods=pods),
        proxmox=ProxmoxData(vms=vms, pci=pci),
        talos=TalosData(machines=machines),
        git=None,
        sources=(),
    )


def gpu(address: str, present: bool = True) -> HostPci:
    return HostPci("pve", address, "0x10de", "0x15f8", "NVIDIA", P100, "0x030200", present)


def passthrough(slot: str, address: str) -> VmDevice:
    return VmDevice(slot, address, "pcie=1", vendor_id="10de", device_id="15f8", description=P100)


def test_nothing_fetched_joins_to_an_empty_snapshot() -> None:
    s = join(
        cluster="c",
        mode="LIVE",
        read_only=False,
        taken_at=1.0,
        kube=None,
        proxmox=None,
        talos=None,
        git=None,
        sources=(),
    )
    assert (s.nodes, s.vms, s.gpus, s.faults) == ((), (), (), ())


def test_machine_matches_by_internal_ip_before_hostname() -> None:
    by_ip = TalosMachine(node="10.0.0.1", hostname="other-name", stage="running")
    by_name = TalosMachine(node="10.0.0.9", hostname="cp-2", stage="running")
    s = snapshot(
        nodes=(Node("cp-1", internal_ip="10.0.0.1"), Node("cp-2", internal_ip="10.0.0.2")),
        machines=(by_ip, by_name),
    )
    cp1, cp2 = s.nodes
    assert cp1.talos == by_ip
    assert cp2.talos == by_name  # no machine at 10.0.0.2: the hostname decides


def test_vm_matches_by_name_then_machine_hostname_then_mac() -> None:
    vms = (
        Vm(100, "cp-1", "pve", "running"),
        Vm(101, "talos-cp-2", "pve", "running"),
        Vm(102, "renamed-in-pve", "pve", "running", macs=("BC:24:11:00:00:03",)),
        Vm(103, "spare", "pve", "stopped"),
    )
    s = snapshot(
        nodes=(
            Node("cp-1", internal_ip="10.0.0.1"),
            Node("cp-2", internal_ip="10.0.0.2"),
            Node("cp-3", labels=(("dapper.io/mac", "bc:24:11:00:00:03"),)),
        ),
        vms=vms,
        machines=(TalosMachine(node="10.0.0.2", hostname="talos-cp-2"),),
    )
    assert [n.vm.vmid if n.vm else None for n in s.nodes] == [100, 101, 102]
    assert {v.vmid: v.node_name for v in s.vms} == {100: "cp-1", 101: "cp-2", 102: "cp-3", 103: ""}


def test_a_stopped_vm_of_a_node_is_a_fault_but_a_spare_one_is_not() -> None:
    s = snapshot(
        nodes=(Node("w-1", ready="Unknown"),),
        vms=(Vm(104, "w-1", "pve", "stopped"), Vm(105, "spare", "pve", "stopped")),
    )
    vm_faults = [f for f in s.faults if f.pane == "vms"]
    assert [(f.subject, f.message) for f in vm_faults] == [("104 w-1", "VM stopped")]


def test_pods_and_usage_come_from_their_sources() -> None:
    pods = (
        PodRef("b", "two", node="w-1", gpu_request=1),
        PodRef("a", "one", node="w-1"),
        PodRef("a", "elsewhere", node="w-2"),
    )
    s = snapshot(
        nodes=(Node("w-1"), Node("w-2", internal_ip="10.0.0.2")),
        pods=pods,
        vms=(Vm(1, "w-1", "pve", "running", cpu_usage=0.25, mem_total=100, mem_used=40),),
        machines=(
            TalosMachine(
                "10.0.0.2", stage="running", memory_total=10, memory_used=5, load1=2.0, cpu_count=4
            ),
        ),
    )
    w1, w2 = s.nodes
    assert [p.name for p in w1.pods] == ["one", "two"]  # sorted by namespace, name
    assert w1.gpu_allocated == 1
    assert (w1.cpu_usage, w1.mem_usage) == (0.25, 0.4)  # the hypervisor's view of the VM
    assert (w2.cpu_usage, w2.mem_usage) == (0.5, 0.5)  # no VM: Talos's load and memory


def test_gpus_follow_hostpci_to_the_node_and_share_its_allocatable() -> None:
    node = Node("gpu-1", gpu_allocatable=8)
    vm = Vm(
        103,
        "gpu-1",
        "pve",
        "running",
        # a full bus address, and the short form PVE also accepts
        devices=(passthrough("hostpci0", "0000:81:00.0"), passthrough("hostpci1", "82:00")),
    )
    pods = (
        PodRef("ml", "a-train", node="gpu-1", gpu_request=3),
        PodRef("ml", "b-infer", node="gpu-1", gpu_request=2),
    )
    s = snapshot(
        nodes=(node,),
        pods=pods,
        vms=(vm,),
        pci=(gpu("0000:81:00.0"), gpu("0000:82:00.0"), gpu("0000:83:00.0")),
    )
    g81, g82, g83 = s.gpus
    assert (g81.node_name, g81.vmid, g81.capacity, g81.allocated) == ("gpu-1", 103, 4, 4)
    assert [p.name for p in g81.pods] == ["a-train", "b-infer"]  # 3 + the first of b's 2
    assert (g82.capacity, g82.allocated, [p.name for p in g82.pods]) == (4, 1, ["b-infer"])
    assert (g83.node_name, g83.vmid, g83.capacity) == ("", None, 0)  # not passed through
    assert g81.model == "Tesla P100 PCIe 16GB"
    assert s.nodes[0].gpus == ("0000:81:00.0", "0000:82:00.0")
    assert s.nodes[0].gpu_allocated == 5


def test_a_gpu_gone_from_the_bus_is_still_shown_and_faulted() -> None:
    vm = Vm(
        103,
        "gpu-1",
        "pve",
        "stopped",
        devices=(
            passthrough("hostpci0", "0000:81:00.0"),
            passthrough("hostpci1", "0000:82:00.0"),
            VmDevice("hostpci2", "mapping=p100-spare"),  # mappings are not bus addresses
        ),
    )
    s = snapshot(
        nodes=(Node("gpu-1", gpu_allocatable=4),),
        vms=(vm,),
        pci=(gpu("0000:81:00.0"), gpu("0000:82:00.0", present=False)),
    )
    assert [(g.address, g.present) for g in s.gpus] == [
        ("0000:81:00.0", True),
        ("0000:82:00.0", False),
    ]
    assert s.gpus[1].capacity == 0
    assert s.gpus[0].capacity == 4  # the node's units over the devices still present
    messages = [(f.pane, f.message) for f in s.faults]
    assert ("gpus", "Tesla P100 PCIe 16GB is gone from the PCI bus") in messages
    assert ("vms", "hostpci1 0000:82:00.0 is missing from host pve") in messages
    assert not any("mapping" in m for _, m in messages)


def test_a_gpu_the_host_no_longer_lists_is_recovered_from_the_vm_config() -> None:
    vm = Vm(103, "gpu-1", "pve", "running", devices=(passthrough("hostpci0", "0000:84:00.0"),))
    s = snapshot(nodes=(Node("gpu-1"),), vms=(vm,), pci=(gpu("0000:81:00.0"),))
    assert [(g.address, g.present, g.vmid) for g in s.gpus] == [
        ("0000:81:00.0", True, None),
        ("0000:84:00.0", False, 103),
    ]


def test_node_less_vms_are_those_no_node_matches() -> None:
    nodes = (
        Node(name="w1", internal_ip="10.0.0.1"),
        Node(name="w2", internal_ip="10.0.0.2", labels=(("dapper.io/mac", "AA:BB"),)),
    )
    machines = (TalosMachine(node="10.0.0.1", hostname="vm-w1", stage="running"),)
    vms = (
        Vm(1, "vm-w1", "pve", "running"),  # the node's machine's hostname
        Vm(2, "other", "pve", "running", macs=("aa:bb",)),  # the node's MAC label
        Vm(3, "w1", "pve", "running"),  # the node's name
        Vm(4, "new", "pve", "running"),
        Vm(5, "off", "pve", "stopped"),
        Vm(6, "tpl", "pve", "running", template=True),
    )
    loose = vms_without_node(KubeData(nodes=nodes), TalosData(machines=machines), vms)
    assert [vm.vmid for vm in loose] == [4]


def test_node_less_vm_gets_the_machine_at_its_agent_address() -> None:
    s = snapshot(
        nodes=(Node(name="w1", internal_ip="10.0.0.1"),),
        vms=(
            Vm(1, "w1", "pve", "running", addresses=("10.0.0.1",)),
            Vm(2, "new", "pve", "running", addresses=("10.0.0.9",)),
        ),
        machines=(
            TalosMachine(node="10.0.0.1", hostname="w1", stage="running"),
            TalosMachine(node="10.0.0.9", stage="maintenance", maintenance=True),
        ),
    )
    by_id = {vm.vmid: vm for vm in s.vms}
    assert by_id[1].node_name == "w1" and by_id[1].talos is None  # the node carries it
    assert by_id[2].node_name == "" and by_id[2].talos is not None
    assert by_id[2].talos.stage == "maintenance"
    assert [n.name for n in s.nodes] == ["w1"]
