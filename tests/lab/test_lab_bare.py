"""The lab's `--stage bare` (issue 13, "The lab"): an empty Proxmox host that comes up,
step by step as a bootstrap drives it, into the running lab's end state. Everything
goes through real sockets and the project's clients: Proxmox (VMs), Talos (maintenance
apply, Bootstrap, Kubeconfig), Kubernetes, and the helmfile shim as a separate process."""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.clients.proxmox import ProxmoxBackend
from dapper.backends.clients.talos import TalosClient
from dapper.backends.errors import BackendError
from dapper.backends.sops.file import decrypt_file, load_yaml_documents, parse_identities
from dapper.backends.talosgen.clientconfig import build_talosconfig
from dapper.backends.talosgen.generate import generate_configs
from dapper.backends.talosgen.secrets import load_secret_bundle
from dapper.lab.helmfile_shim import read_log
from dapper.lab.runtime import LAB_KEY, RunningLab, find_repo, start_lab
from dapper.lab.world import TALOS_ISO, Timings
from dapper.lab.world.kube import CNI_NOT_READY

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from tests.waiting import eventually

HELMFILE = "kubernetes/bootstrap/apps/helmfile.yaml"
CLUSTER_VMIDS = range(100, 107)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    timings = Timings(boot=0.05, task=0.05, clone=0.05, install=0.05, event_history=False)
    directory = tmp_path_factory.mktemp("bare")
    running = start_lab(stage="bare", directory=directory, timings=timings)
    yield running
    running.stop()


def _pve(lab: RunningLab) -> ProxmoxBackend:
    return ProxmoxBackend.from_config(lab.config.proxmox)


def _refused(url: str) -> bool:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError as exc:
        return exc.errno == errno.ECONNREFUSED
    return False


def _talos(lab: RunningLab) -> TalosClient:
    return TalosClient.from_config(
        lab.config.talosconfig,
        lab.config.talos_context,
        maintenance_port=lab.config.talos_maintenance_port,
        timeout=5.0,
    )


def _helmfile(lab: RunningLab, *args: str) -> subprocess.CompletedProcess[str]:
    repo = find_repo()
    env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": lab.config.kubeconfig}
    return subprocess.run(
        [lab.config.helmfile, "--file", HELMFILE, *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bare_host_has_no_cluster(lab: RunningLab) -> None:
    pve = _pve(lab)
    vmids = {vm.vmid for vm in pve.vms()}
    assert not vmids & set(CLUSTER_VMIDS)
    assert 9000 in vmids  # the Talos template
    assert {m.id for m in pve.mappings_pci()} >= {
        *(f"p100-{i}" for i in range(4)),
        *(f"hba-{i}" for i in range(4)),
    }
    assert not lab.world.machines and not lab.world.etcd
    assert _refused(lab.world.endpoints["kubernetes"])  # the VIP: nobody holds it yet
    assert not Path(lab.config.kubeconfig).exists()
    assert not Path(lab.config.talosconfig).exists()
    assert os.access(lab.config.helmfile, os.X_OK)
    assert lab.config.kube_context == "lab-admin"
    assert lab.config.talos_context == "kubernetes"


def test_helmfile_without_a_cluster_fails_in_one_line(lab: RunningLab, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    from dapper.lab.clientfiles import kubeconfig_text

    kubeconfig.write_text(
        kubeconfig_text(
            lab.world.endpoints["kubernetes"], lab.pki.https_ca.cert_pem, lab.credentials
        )
    )
    env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(kubeconfig)}
    done = subprocess.run(
        [lab.config.helmfile, "--file", HELMFILE, "apply"],
        cwd=find_repo(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Kubernetes cluster unreachable" in done.stderr


def _create_vms(lab: RunningLab) -> None:
    """The seven VMs as the bootstrap creates them from talconfig (and started)."""
    pve = _pve(lab)
    hbas = iter(range(4))
    for spec in lab.world.specs:
        config: dict[str, str | int] = {
            "name": spec.hostname,
            "cores": spec.cores,
            "memory": spec.memory_mib,
            "net0": f"virtio={spec.mac.upper()},bridge=vmbr0,tag=100",
            "virtio0": f"local-zfs:{32 if spec.role == 'controlplane' else 128}",
            "ide2": f"{TALOS_ISO},media=cdrom",
            "agent": "1",
        }
        slot = 0
        if spec.gpu:
            for i in range(4):
                config[f"hostpci{slot}"] = f"mapping=p100-{i},pcie=1"
                slot += 1
        if spec.storage:
            config[f"hostpci{slot}"] = f"mapping=hba-{next(hbas)},pcie=1"
        pve.wait_task(pve.create_vm(spec.vmid, **config), timeout=10)
        pve.wait_task(pve.start(spec.vmid), timeout=10)


def _addresses(lab: RunningLab) -> dict[str, str]:
    pve = _pve(lab)

    def ask(vmid: int) -> str | None:
        try:
            found = pve.guest_addresses(vmid)
        except BackendError:
            return None
        return found[0] if found else None

    return {
        s.hostname: eventually(lambda s=s: ask(s.vmid), message=f"{s.hostname}'s guest agent")
        for s in lab.world.specs
    }


def _kube_api(lab: RunningLab) -> k8s.ApiClient:
    return k8s_config.new_client_from_config(
        config_file=lab.config.kubeconfig, context=lab.config.kube_context
    )


def test_bootstrap_by_hand_reaches_the_running_lab(lab: RunningLab) -> None:
    repo = find_repo()
    assert repo is not None
    identities = parse_identities(LAB_KEY.read_text())
    generated = generate_configs(repo, identities)
    bundle = load_secret_bundle(repo, identities)
    # the runbook's talosconfig: the tree's OS CA, at the endpoint the config names
    talosconfig = build_talosconfig(
        lab.config.talos_context,
        [lab.config.talos_endpoint],
        [s.ip for s in lab.world.specs],
        bundle.os,
    )
    Path(lab.config.talosconfig).write_bytes(talosconfig)

    _create_vms(lab)
    addresses = _addresses(lab)

    async def configure() -> bytes:
        async with _talos(lab) as c:
            for spec in lab.world.specs:
                await c.apply_configuration(
                    addresses[spec.hostname],
                    generated.config_for(spec.hostname),
                    maintenance=True,
                )
            first = "10.100.0.50"
            await eventually_async(lambda: c.version(first), "talos-control-1 installed")
            await c.bootstrap(first)
            with pytest.raises(BackendError, match="etcd data directory is not empty"):
                await c.bootstrap(first)
            return await c.kubeconfig(first)

    kubeconfig = asyncio.run(configure())
    # the audit a resumed run is checked against: one Bootstrap that took (the refused one
    # changed nothing)
    assert [w.op for w in lab.world.writes if w.op.startswith("Bootstrap")] == [
        "Bootstrap 10.100.0.50"
    ]
    Path(lab.config.kubeconfig).write_bytes(kubeconfig)
    eventually(
        lambda: not _refused(lab.world.endpoints["kubernetes"]), message="the API at the VIP"
    )

    kube = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
    eventually(lambda: len(kube.node_objects()) == 7, message="seven nodes registered")
    for node in kube.node_objects():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == ("False", *CNI_NOT_READY)
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        assert ("node.kubernetes.io/not-ready", "NoSchedule") in taints

    api = _kube_api(lab)
    core = k8s.CoreV1Api(api)
    have = {n.metadata.name for n in core.list_namespace().items}  # kube-apiserver's own
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= have
    for ns in sorted(p.name for p in (repo / "kubernetes/apps").iterdir() if p.is_dir()):
        if ns not in have:
            core.create_namespace({"metadata": {"name": ns}})
    key = base64.b64encode(LAB_KEY.read_bytes()).decode()
    core.create_namespaced_secret(
        "flux-system", {"metadata": {"name": "sops-age"}, "data": {"age.agekey": key}}
    )
    # what cluster-apps substitutes from, read live by kustomize-controller: the
    # bootstrap's flux-secrets step applies them (cluster-secrets decrypted in memory)
    common = repo / "kubernetes/components/common/substitutions"
    secrets = decrypt_file(
        common / "cluster-secrets.sops.yaml", parse_identities(LAB_KEY.read_text())
    )
    for doc in secrets.documents:
        data = {
            str(k): base64.b64encode(str(v).encode()).decode()
            for k, v in (doc.get("stringData") or {}).items()
        }
        core.create_namespaced_secret(
            "flux-system", {"metadata": {"name": "cluster-secrets"}, "data": data}
        )
    for doc in load_yaml_documents((common / "cluster-settings.yaml").read_text(), "settings"):
        data = {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
        core.create_namespaced_config_map(
            "flux-system", {"metadata": {"name": "cluster-settings"}, "data": data}
        )
    assert lab.flux is not None and lab.flux.passes == 0  # Flux waits for its instance
    assert not kube.kustomization_objects()

    done = _helmfile(lab, "apply", "--skip-diff-on-install", "--suppress-diff")
    assert done.returncode == 0, done.stderr
    eventually(
        lambda: all(n.ready == "True" for n in kube.nodes()),
        message="every node Ready once Cilium runs",
    )
    assert lab.flux.settle(timeout=60), lab.flux.unsettled()
    assert all(k.ready for k in kube.kustomizations())

    # the running lab's end state
    members = lab.world.talos.members()
    assert len(members) == 3 and all(m.healthy and not m.is_learner for m in members)
    gpu = next(n for n in kube.nodes() if n.name == "talos-node-gpu-1")
    assert gpu.gpu_allocatable == 16
    pools = eventually(
        lambda: (p := kube.disk_pools()) and all(x.state == "Online" for x in p) and p,
        message="4 pools Online",
    )
    assert len(pools) == 4


def test_the_shim_is_idempotent_and_destroy_keeps_crds(lab: RunningLab) -> None:
    if not Path(lab.config.kubeconfig).exists():
        pytest.skip("needs the bootstrapped cluster of the previous test")
    api = _kube_api(lab)
    core = k8s.CoreV1Api(api)
    crds = k8s.ApiextensionsV1Api(api)
    secret = core.read_namespaced_secret("sh.helm.release.v1.cilium.v1", "kube-system")
    assert secret.type == "helm.sh/release.v1"
    assert secret.metadata.labels == {
        "owner": "helm",
        "name": "cilium",
        "status": "deployed",
        "version": "1",
    }
    before = secret.metadata.resource_version
    assert _helmfile(lab, "apply").returncode == 0
    after = core.read_namespaced_secret("sh.helm.release.v1.cilium.v1", "kube-system")
    assert after.metadata.resource_version == before

    done = _helmfile(lab, "destroy", "--selector", "name=prometheus-operator-crds")
    assert done.returncode == 0, done.stderr
    names = {s.metadata.name for s in core.list_namespaced_secret("observability").items}
    assert "sh.helm.release.v1.prometheus-operator-crds.v1" not in names
    kept = crds.read_custom_resource_definition("servicemonitors.monitoring.coreos.com")
    assert kept.metadata.annotations["helm.sh/resource-policy"] == "keep"
    # a resumed bootstrap applying again adopts the kept CRDs (they are the release's)
    again = _helmfile(lab, "apply", "--selector", "name=prometheus-operator-crds")
    assert again.returncode == 0, again.stderr
    core.read_namespaced_secret("sh.helm.release.v1.prometheus-operator-crds.v1", "observability")
    assert _helmfile(lab, "destroy", "--selector", "name=prometheus-operator-crds").returncode == 0

    log = read_log(lab.dir)
    first = next(e for e in log if e["argv"][3:4] == ["apply"] and len(e["argv"]) > 4)
    assert first["argv"] == [
        "helmfile",
        "--file",
        HELMFILE,
        "apply",
        "--skip-diff-on-install",
        "--suppress-diff",
    ]
    assert "KUBECONFIG" in first["env"]
    assert log[-1]["argv"][-3:] == ["destroy", "--selector", "name=prometheus-operator-crds"]


async def eventually_async(call, message: str, timeout: float = 10.0) -> None:
    """Until `call()` (a coroutine factory) stops raising BackendError."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await call()
            return
        except BackendError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {message}") from None
            await asyncio.sleep(0.05)


def test_lab_command_stage_bare(tmp_path: Path) -> None:
    """`dapper-tui lab --stage bare --dir DIR`: the configs name where the bootstrap
    writes the kubeconfig and talosconfig (not written) and the helmfile shim."""
    import signal
    import sys
    import tomllib

    directory = tmp_path / "lab"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dapper.cli.main",
            "lab",
            "--stage",
            "bare",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=find_repo(),
    )
    try:
        seen: list[str] = []
        for line in proc.stdout or []:
            seen.append(line)
            if "Ctrl+C stops the lab." in line:
                break
        assert "bare Proxmox host" in "".join(seen), seen
        cfg = tomllib.loads((directory / "config.toml").read_text())
        assert cfg["helmfile"] == str(directory / "bin" / "helmfile")
        assert cfg["talos_context"] == "kubernetes" and cfg["talos_endpoint"]
        assert not Path(cfg["kubeconfig"]).exists() and not Path(cfg["talosconfig"]).exists()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
