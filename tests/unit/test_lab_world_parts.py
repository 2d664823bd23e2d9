"""The lab world's pure parts: fault strings, Talos machine configs, node specs, pod shapes."""

from __future__ import annotations

import re

import pytest
from dapper.lab import talos_config
from dapper.lab.kinds import by_kind
from dapper.lab.store import WatchEvent
from dapper.lab.world import (
    DAPPER_NODES,
    World,
    WorldError,
    node_specs,
    pod_gpu_request,
    pod_object,
)
from dapper.lab.world.faults import FAULT_KINDS, parse_fault
from dapper.lab.world.kube_objects import controller_of, labels_match
from dapper.lab.world.talos import cluster_machine_config, machine_config


@pytest.mark.parametrize(
    ("fault", "parsed"),
    [
        ("api-slow:kubernetes:2", ("api-slow", "kubernetes:2")),
        ("ks-failing:media/plex", ("ks-failing", "media/plex")),
        ("gpu-gone:0000:83:00.0", ("gpu-gone", "0000:83:00.0")),
    ],
)
def test_faults_split_at_the_first_colon(fault: str, parsed: tuple[str, str]) -> None:
    assert parse_fault(fault) == parsed


def test_an_unknown_fault_names_the_known_kinds() -> None:
    with pytest.raises(WorldError) as err:
        parse_fault("disk-full:pve")
    assert err.value.code == 400
    assert all(kind in str(err.value) for kind in FAULT_KINDS)


def test_lab_configs_load_and_init_is_a_control_plane() -> None:
    cfg = talos_config.load(
        cluster_machine_config("talos-node-large-9", "worker", os_ca_pem="PEM", token="t.k")
    )
    assert (cfg.hostname, cfg.role, cfg.os_ca_crt, cfg.token) == (
        "talos-node-large-9",
        "worker",
        "PEM",
        "t.k",
    )
    init = cluster_machine_config("cp", "controlplane", os_ca_pem="PEM", token="t.k")
    assert talos_config.load(init.replace(b"type: controlplane", b"type: init")).role == (
        "controlplane"
    )
    # the seeded machines' minimal configs are not complete ones (no CA)
    with pytest.raises(talos_config.ConfigError, match="issuing CA"):
        talos_config.load(machine_config("talos-node-large-9", "worker"))


@pytest.mark.parametrize(
    ("data", "error", "stage"),
    [
        (b"machine: [unclosed\n", "yaml: ", "parse"),
        (b"foo: 1\n", "missing kind", "parse"),
        (b"kind: HostnameConfig\n", "doesn't contain v1alpha1 config", "validation"),
        (b"machine:\n  type: router\n", 'unknown machine type "router"', "validation"),
        (b"machine:\n  typo: worker\n", "unknown keys found during decoding:\n", "parse"),
    ],
)
def test_what_talos_would_refuse_is_refused(data: bytes, error: str, stage: str) -> None:
    with pytest.raises(talos_config.ConfigError, match=re.escape(error)) as err:
        talos_config.load(data)
    assert err.value.stage == stage


def test_validation_problems_come_together_in_multierror_form() -> None:
    problems = talos_config.validate({"machine": {"type": "worker"}})
    assert problems == [
        "cluster instructions are required",
        "issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)",
    ]
    assert talos_config.multierror(problems) == (
        "2 errors occurred:\n\t* cluster instructions are required\n"
        "\t* issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)\n\n"
    )


def test_node_specs_are_the_real_seven_then_stable_storage_workers() -> None:
    assert node_specs(3) == list(DAPPER_NODES[:3])
    big = node_specs(9)
    assert big[:7] == list(DAPPER_NODES)
    assert [(s.hostname, s.ip, s.vmid, s.role, s.storage) for s in big[7:]] == [
        ("talos-node-large-4", "10.101.0.17", 107, "worker", True),
        ("talos-node-large-5", "10.101.0.18", 108, "worker", True),
    ]
    assert big == node_specs(9)  # the random MACs are seeded


def test_a_big_lab_gives_every_node_its_own_address_and_mac() -> None:
    """At 500 nodes, 13 pairs of nodes shared an InternalIP: the console joined both to one
    Talos machine, and the Talos source asked 487 machines for 500 nodes."""
    specs = node_specs(2000)
    assert len({s.ip for s in specs}) == len(specs)
    assert len({s.mac for s in specs}) == len(specs)
    assert all(0 <= int(octet) < 255 for s in specs for octet in s.ip.split("."))


def test_pods_report_their_gpus_owner_and_pending_state() -> None:
    pod = pod_object("ml", "train-0", "", owner=("StatefulSet", "train"), gpu=2)
    assert pod_gpu_request(pod) == 2
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert controller_of(pod) == ("StatefulSet", "train")
    assert pod["status"]["phase"] == "Pending"
    assert controller_of(pod_object("ml", "bare", "n1")) == ("", "")


def test_an_empty_selector_matches_every_node() -> None:
    assert labels_match({"a": "1"}, None)
    assert labels_match({"a": "1", "b": "2"}, {"a": "1"})
    assert not labels_match({"a": "1"}, {"a": "2"})


def test_lab_configs_carry_both_tokens_and_the_interface_by_mac() -> None:
    data = cluster_machine_config(
        "talos-node-large-2",
        "worker",
        os_ca_pem="PEM",
        token="boot.strap",
        machine_token="trust.d",
        mac="BC:24:11:E0:17:19",
        addresses=("10.100.0.55/24",),
    )
    cfg = talos_config.load(data)
    assert (cfg.machine_token, cfg.token) == ("trust.d", "boot.strap")
    [iface] = cfg.interfaces
    assert (iface.hardware_addr, iface.addresses, iface.dhcp) == (
        "bc:24:11:e0:17:19",
        ("10.100.0.55/24",),
        False,
    )
    no_name = talos_config.load(cluster_machine_config("", "worker", os_ca_pem="P", token="t"))
    assert no_name.hostname == "" and no_name.interfaces == ()


def test_a_node_registering_before_the_cni_is_never_seen_ready() -> None:
    """The API lists without the world's lock: a kubelet registering with no CNI posts
    NotReady in its first status, never a Ready that a reader could catch."""
    world = World(stage="bare")
    try:
        seen: list[tuple[str, str]] = []

        def on_event(event: WatchEvent) -> None:
            if tuple(event.key[:2]) == ("", "nodes"):
                conds = event.obj.get("status", {}).get("conditions") or []
                ready = next(c["status"] for c in conds if c["type"] == "Ready")
                seen.append((event.type, ready))

        world.store.add_listener(on_event)
        with world.lock:
            world.kube.register_node(world.specs[0])
        assert seen and seen[0] == ("ADDED", "False")
        assert all(ready == "False" for _, ready in seen)
        node = world.store.find(by_kind("", "Node"), "", world.specs[0].hostname)
        assert node is not None
        taints = {(t["key"], t["effect"]) for t in node["spec"]["taints"]}
        assert ("node.kubernetes.io/not-ready", "NoSchedule") in taints
    finally:
        world.close()
