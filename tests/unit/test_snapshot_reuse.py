"""The collector rebuilds only what changed: `Reuse`, the node parses and the join.

At 500 nodes and 50 pod changes a second, re-parsing every node and re-copying every
joined object at each refresh was most of the collector's CPU (and so of the GIL the
console's keys wait for). These pin the rule that makes reuse safe: the very same input
objects give back the very same result, and any other input (even an equal one) builds
anew.
"""

from __future__ import annotations

from dapper.backends.model import Kustomization, Node, PodRef, Vm
from dapper.backends.snapshot.join import GitData, JoinReuse, KubeData, ProxmoxData, join
from dapper.backends.snapshot.kubernetes_source import NodeParses, kube_data
from dapper.backends.snapshot.reuse import Reuse


def test_the_same_inputs_give_the_same_object_and_equal_ones_build_anew() -> None:
    reuse: Reuse[list[str]] = Reuse()
    a, b = ["a"], ["b"]
    first = reuse.get("k", (a, b), lambda: ["built"])
    reuse.done()
    assert reuse.get("k", (a, b), lambda: ["again"]) is first
    reuse.done()
    assert reuse.get("k", (a, ["b"]), lambda: ["again"]) == ["again"]  # equal, not the same
    reuse.done()


def test_a_build_forgets_what_it_did_not_ask_for() -> None:
    reuse: Reuse[str] = Reuse()
    reuse.get("gone", (), lambda: "old")
    reuse.done()
    reuse.done()  # a build that did not ask for "gone"
    assert reuse.get("gone", (), lambda: "new") == "new"


def raw_node(name: str) -> dict:
    return {"metadata": {"name": name}, "status": {"capacity": {"nvidia.com/gpu": "2"}}}


def data(nodes: list[dict], pods: list[PodRef], memo: NodeParses) -> KubeData:
    return kube_data(
        {"nodes": nodes, "pods": pods, "kustomizations": [], "diskpools": [], "events": []},
        memo,
    )


def test_only_the_node_whose_pods_changed_is_parsed_again() -> None:
    memo = NodeParses()
    n1, n2 = raw_node("n1"), raw_node("n2")
    p_b = PodRef("ns", "b", node="n1", phase="Running", gpu_request=1)
    p_a = PodRef("ns", "a", node="n1", phase="Running")
    p_c = PodRef("ns", "c", node="n2", phase="Running")
    first = data([n1, n2], [p_b, p_a, p_c], memo)
    assert [p.name for p in first.nodes[0].pods] == ["a", "b"]  # list order, whatever came
    assert first.nodes[0].gpu_allocated == 1

    p_c2 = PodRef("ns", "c", node="n2", phase="Succeeded")  # a changed pod is a new object
    second = data([n1, n2], [p_b, p_a, p_c2], memo)
    assert second.nodes[0] is first.nodes[0]
    assert second.nodes[1] is not first.nodes[1] and second.nodes[1].pods == (p_c2,)

    n1_changed = {**n1, "spec": {"unschedulable": True}}
    third = data([n1_changed, n2], [p_b, p_a, p_c2], memo)
    assert third.nodes[0].unschedulable and third.nodes[1] is second.nodes[1]


def test_a_second_join_reuses_what_did_not_change() -> None:
    reuse = JoinReuse()
    node = Node("w-1", pods=(PodRef("ns", "a", node="w-1", gpu_request=1),))
    ks = Kustomization("flux-system", "apps")

    def joined(vm: Vm):
        return join(
            cluster="c",
            mode="LAB",
            read_only=True,
            taken_at=1.0,
            kube=KubeData(nodes=(node,), kustomizations=(ks,)),
            proxmox=ProxmoxData(vms=(vm,)),
            sources=(),
            reuse=reuse,
        )

    vm = Vm(101, "w-1", "pve", "running", cpu_usage=0.5)
    first = joined(vm)
    again = joined(vm)
    assert again.nodes[0] is first.nodes[0] and again.vms[0] is first.vms[0]
    assert again.kustomizations[0] is first.kustomizations[0]
    assert first.nodes[0].gpu_allocated == 1 and first.nodes[0].vm is vm

    busier = Vm(101, "w-1", "pve", "running", cpu_usage=0.9)
    third = joined(busier)
    assert third.nodes[0].cpu_usage == 0.9 and third.nodes[0].vm is busier
    assert third.kustomizations[0] is first.kustomizations[0]


def test_unchanged_kustomizations_are_reused_as_a_list_and_one_change_rebuilds_one() -> None:
    reuse = JoinReuse()
    git = GitData()
    apps = Kustomization("flux-system", "apps")
    infra = Kustomization("flux-system", "infra")

    def joined(*kustomizations: Kustomization):
        return join(
            cluster="c",
            mode="LAB",
            read_only=True,
            taken_at=1.0,
            kube=KubeData(kustomizations=kustomizations),
            git=git,
            sources=(),
            reuse=reuse,
        )

    first = joined(infra, apps)
    assert [k.name for k in first.kustomizations] == ["apps", "infra"]  # sorted by key
    assert joined(infra, apps).kustomizations is first.kustomizations  # the whole list
    assert joined(infra, apps).kustomizations is first.kustomizations  # and again

    suspended = Kustomization("flux-system", "infra", suspended=True)
    third = joined(suspended, apps).kustomizations
    assert third[0] is first.kustomizations[0]  # apps: its entry outlived the list reuse
    assert third[1].suspended and third[1] is not first.kustomizations[1]
