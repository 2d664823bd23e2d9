"""What kubectl sees of nodes and pods that the API server and kubelets maintain: node
Leases renewed while the kubelet posts (issue 15 point 4), pod IPs from the pod CIDR and
requests defaulted from limits (point 6)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from kubernetes import client, config
from tests.lab.kube_lab import DRAIN_NODE, WORKER, Lab, running_lab
from tests.lab.test_kube_apply import KUBECTL, kubectl, kubectl_as


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("nodestate")) as lab:
        yield lab


def leases(lab: Lab) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(config.new_client_from_config(str(lab.admin)))


@pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")
def test_describe_node_shows_its_lease(lab: Lab) -> None:
    out = kubectl_as(lab, "describe", "node", WORKER, readonly=True)
    assert out.returncode == 0, out.stderr
    assert "Failed to get lease" not in out.stdout + out.stderr
    assert f"HolderIdentity:  {WORKER}" in out.stdout


def test_leases_renew_only_while_the_kubelet_posts(lab: Lab) -> None:
    api = leases(lab)
    names = {lease.metadata.name for lease in api.list_namespaced_lease("kube-node-lease").items}
    assert WORKER in names and len(names) == len(lab.world.specs)
    fault = f"node-notready:{DRAIN_NODE}"
    lab.world.inject(fault)
    try:
        before = {n: api.read_namespaced_lease(n, "kube-node-lease").spec.renew_time for n in names}
        time.sleep(0.01)
        lab.server.leases.renew()  # one heartbeat round, as the timer runs it
        after = {n: api.read_namespaced_lease(n, "kube-node-lease").spec.renew_time for n in names}
        assert after[WORKER] > before[WORKER]
        assert after[DRAIN_NODE] == before[DRAIN_NODE]
        lease = api.read_namespaced_lease(WORKER, "kube-node-lease")
        assert lease.spec.holder_identity == WORKER and lease.spec.lease_duration_seconds == 40
    finally:
        lab.world.clear(fault)
    lab.server.leases.renew()
    renewed = api.read_namespaced_lease(DRAIN_NODE, "kube-node-lease").spec.renew_time
    assert renewed > before[DRAIN_NODE]


def test_running_pods_have_ips_from_their_nodes_pod_cidr(lab: Lab) -> None:
    core = client.CoreV1Api(config.new_client_from_config(str(lab.admin)))
    cidrs = {n.metadata.name: n.spec.pod_cidr for n in core.list_node().items}
    assert len(set(cidrs.values())) == len(cidrs)
    pods = [p for p in core.list_pod_for_all_namespaces().items if p.status.phase == "Running"]
    assert pods
    seen = set()
    for pod in pods:
        ip = ipaddress.ip_address(pod.status.pod_ip)
        assert pod.status.host_ip
        if "kubernetes.io/config.mirror" in (pod.metadata.annotations or {}):
            assert pod.status.pod_ip == pod.status.host_ip  # static pods: host network
            continue
        assert ip in ipaddress.ip_network("10.69.0.0/16")
        assert ip in ipaddress.ip_network(cidrs[pod.spec.node_name]), pod.metadata.name
        assert ip not in seen
        seen.add(ip)


@pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")
def test_requests_default_from_limits(lab: Lab) -> None:
    pod = """apiVersion: v1
kind: Pod
metadata:
  name: gpu-job
  namespace: default
spec:
  containers:
  - name: cuda
    image: nvidia/cuda:12.4.0-base-ubuntu22.04
    resources:
      limits:
        nvidia.com/gpu: "1"
        memory: 1Gi
"""
    kubectl(lab, "apply", "-f", "-", stdin=pod)
    core = client.CoreV1Api(config.new_client_from_config(str(lab.admin)))
    made = core.read_namespaced_pod("gpu-job", "default")
    assert made.spec.containers[0].resources.requests == {"nvidia.com/gpu": "1", "memory": "1Gi"}
