"""Start and stop the whole lab in-process: world, three servers, Git remote, Flux twin.

`start_lab()` is what the console (no configuration), `dapper-tui lab`, the tests and the
benchmarks call. It returns a `RunningLab` whose `config` points the real backends at
the lab through ordinary client files, so nothing downstream knows it is a lab.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dapper.backends.config import Config, ProxmoxConfig
from dapper.lab.churn import Churn
from dapper.lab.clientfiles import LabFiles, kubeconfig_text, write_client_files
from dapper.lab.credentials import LabCredentials
from dapper.lab.flux_scale import replicas_plan
from dapper.lab.pki import Pki
from dapper.lab.world import Timings, World, WorldError

if TYPE_CHECKING:
    from dapper.lab.flux_twin import FluxTwin
    from dapper.lab.git_remote import LabGitRemote
    from dapper.lab.kube_server import KubeApiServer
    from dapper.lab.pve_server import PveServer
    from dapper.lab.talos_server import TalosLabServer

log = logging.getLogger(__name__)

LAB_KEY = Path(__file__).resolve().parent / "keys" / "lab-only.agekey.txt"
# The context of the talosconfig a bootstrap generates from the tree (talhelper names it
# after talconfig's clusterName).
BOOTSTRAP_TALOS_CONTEXT = "kubernetes"


def find_repo(start: Path | None = None) -> Path | None:
    """The checkout holding kubernetes/: from `start` (or cwd) upwards, then this package's."""
    candidates = [start or Path.cwd(), Path(__file__).resolve().parent.parent]
    for base in candidates:
        for p in (base, *base.parents):
            if (p / "kubernetes").is_dir() and (p / ".git").exists():
                return p
    return None


def default_scale_apps(nodes: int) -> int:
    """Synthetic Flux apps for a lab of `nodes`: none at the real size, 3 per extra node."""
    return 3 * max(0, nodes - 7)


@dataclass
class RunningLab:
    """A started lab; `stop()` leaves no thread, port or temporary file behind."""

    world: World
    pki: Pki
    credentials: LabCredentials
    files: LabFiles
    config: Config
    readonly_config: Config
    servers: list = field(default_factory=list)
    remote: LabGitRemote | None = None
    flux: FluxTwin | None = None
    churn: Churn | None = None
    _tmp: str | None = None

    @property
    def dir(self) -> Path:
        return self.files.dir

    def stop(self) -> None:
        if self.churn is not None:
            self.churn.stop()
        if self.flux is not None:
            self.flux.stop()
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception:  # stop everything even if one part fails
                log.exception("stopping %s failed", type(server).__name__)
        self.world.close()
        if self.remote is not None:
            self.remote.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> RunningLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LabServers:
    """The three API servers of a lab, started in this order and stopped in reverse."""

    kube: KubeApiServer
    pve: PveServer
    talos: TalosLabServer

    @property
    def kube_url(self) -> str:
        return f"https://127.0.0.1:{self.kube.port}"


@dataclass
class FluxParts:
    """The Git remote and Flux twin (both None without a checkout); `scratch` is the
    working copy the console's Git actions use."""

    remote: LabGitRemote | None
    twin: FluxTwin | None
    scratch: str


def start_lab(
    *,
    repo: Path | None = None,
    directory: Path | None = None,
    nodes: int = 7,
    faults: tuple[str, ...] = (),
    timings: Timings | None = None,
    flux: bool = True,
    read_only: bool = False,
    scale_apps: int | None = None,
    pods: int | None = None,
    churn: float = 0.0,
    stage: str = "running",
) -> RunningLab:
    """Start the lab. `directory` receives the client files (default: a private temp dir,
    removed on stop). Without a checkout holding kubernetes/, the Flux twin is skipped.
    `scale_apps` synthetic Flux apps are added to the real tree's (default: 3 per node
    above the real 7, so a big lab has proportionally many Kustomizations and pods).
    `pods` sizes their replicas so the lab runs about that many pods in all; `churn` pod
    changes per second keep watches busy (lab.churn).

    `stage` "running" is the Dapper cluster as it runs; "bare" is the Proxmox host before
    a bootstrap: no cluster VM, machine, etcd or Kubernetes object, the Kubernetes port
    refusing until etcd is bootstrapped, Flux idle until its FluxInstance exists, and no
    kubeconfig or talosconfig written (the bootstrap writes them; the configs name the
    paths and contexts it will write)."""
    t0 = time.perf_counter()
    tmp: str | None = None
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="dapper-lab-")
        directory = Path(tmp)
    if nodes < 1:
        raise WorldError(f"the lab needs at least one node, not {nodes}")
    world = World(nodes=nodes, timings=timings, stage=stage)
    creds = LabCredentials()
    started: list = []
    try:
        repo = repo or find_repo()
        pki = _cluster_pki(world, repo)
        apps = default_scale_apps(nodes) if scale_apps is None else scale_apps
        _check_faults(world, faults, repo if flux else None, apps)
        servers = _start_servers(world, pki, creds, started)
        _publish_endpoints(world, servers)
        parts = (
            _start_flux(
                world,
                repo,
                directory,
                apps,
                replicas=replicas_plan(apps, nodes, pods),
                await_instance=stage == "bare",
            )
            if flux and repo is not None
            else FluxParts(None, None, str(repo or ""))
        )
        files = _write_files(directory, world, servers, pki, creds, parts.scratch)
        for fault in faults:
            world.inject(fault)
    except BaseException:
        for server in reversed(started):
            server.stop()
        world.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    lab = RunningLab(
        world=world,
        pki=pki,
        credentials=creds,
        files=files,
        config=_lab_config(files, servers, parts.scratch, read_only, bare=stage == "bare"),
        readonly_config=_lab_config(files, servers, parts.scratch, True, bare=stage == "bare"),
        servers=started,
        remote=parts.remote,
        flux=parts.twin,
        churn=Churn(world, churn) if churn > 0 else None,
        _tmp=tmp,
    )
    if lab.churn is not None:
        lab.churn.start()
    log.info("lab started in %.0f ms at %s", (time.perf_counter() - t0) * 1000, directory)
    return lab


def _cluster_pki(world: World, repo: Path | None) -> Pki:
    """The lab's PKI, its Talos CA and the cluster's tokens from the tree's secret bundle
    when the lab key opens it (so configs generated from the tree join), else fresh."""
    from dapper.lab.cluster_identity import from_repo
    from dapper.lab.pki import CertificateAuthority

    identity = from_repo(repo, LAB_KEY.read_text())
    if identity is None:
        return Pki()
    with world.lock:
        world.cluster_os_ca = identity.os_ca_cert_pem.decode()
        world.machine_token = identity.machine_token
        world.cluster_token = identity.cluster_token
    return Pki(CertificateAuthority.from_pem(identity.os_ca_cert_pem, identity.os_ca_key_pem))


def _check_faults(world: World, faults: tuple[str, ...], repo: Path | None, apps: int) -> None:
    """Refuse an unknown fault or target before any server starts or file is written."""
    if not faults:
        return
    from dapper.lab.fault_targets import FaultTargets, check_fault

    targets = FaultTargets.of(world, repo, apps)
    for fault in faults:
        check_fault(fault, targets)


def _start_servers(world: World, pki: Pki, creds: LabCredentials, started: list) -> LabServers:
    """Kubernetes, Proxmox and Talos on loopback; each is added to `started` once it runs,
    so a failure stops exactly the ones already up."""
    from dapper.lab.kube_server import KubeApiServer
    from dapper.lab.pve_server import PveServer
    from dapper.lab.talos_server import TalosLabServer

    kube = KubeApiServer(world, pki, creds, at_bootstrap=world.stage == "bare")
    kube.start()
    started.append(kube)
    kube_url = f"https://127.0.0.1:{kube.port}"
    pve = PveServer(world, pki)
    pve.start()
    started.append(pve)
    talos = TalosLabServer(
        world,
        pki,
        kubeconfig=lambda: kubeconfig_text(kube_url, pki.https_ca.cert_pem, creds).encode(),
    )
    talos.start()
    started.append(talos)
    return LabServers(kube, pve, talos)


def _publish_endpoints(world: World, servers: LabServers) -> None:
    """Where each API listens, for the twins and tests that need to say so."""
    world.endpoints.update(
        kubernetes=servers.kube_url,
        proxmox=servers.pve.url,
        talos=servers.talos.endpoint,
        talos_maintenance=servers.talos.maintenance_endpoint,
        # every machine also answers at its own loopback address on this port (as a real
        # one does on :50000); the Proxmox guest agent reports the address
        talos_machine_port=str(servers.talos.machine_port),
    )


def _start_flux(
    world: World,
    repo: Path,
    directory: Path,
    apps: int,
    *,
    replicas: list[int] | None = None,
    await_instance: bool = False,
) -> FluxParts:
    """The Git remote (a bare clone of `repo` under `directory`) and the Flux twin
    reconciling it with `apps` synthetic apps added (once its FluxInstance exists, with
    `await_instance`)."""
    from dapper.backends.sops.file import parse_identities
    from dapper.lab.flux_twin import FluxTwin
    from dapper.lab.git_remote import LabGitRemote

    remote = LabGitRemote.create(repo, directory / "git")
    twin = FluxTwin(
        world,
        remote,
        parse_identities(LAB_KEY.read_text()),
        scale_apps=apps,
        scale_replicas=replicas,
        await_instance=await_instance,
    )
    twin.start()
    return FluxParts(remote, twin, str(remote.scratch_path))


def _write_files(
    directory: Path,
    world: World,
    servers: LabServers,
    pki: Pki,
    creds: LabCredentials,
    scratch: str,
) -> LabFiles:
    """The kubeconfig, talosconfig, PVE token files, CA, age key, helmfile shim and dapper
    configs (no kubeconfig or talosconfig for a cluster still to bootstrap)."""
    from dapper.lab.helmfile_shim import write_shim

    pve, talos = servers.pve, servers.talos
    bare = world.stage == "bare"
    return write_client_files(
        directory,
        kube_url=servers.kube_url,
        pve_url=pve.url,
        pve_admin=(pve.admin_token.token_id, pve.admin_token.secret),
        pve_auditor=(pve.auditor_token.token_id, pve.auditor_token.secret),
        talos_endpoint=talos.endpoint,
        talos_maintenance_endpoint=talos.maintenance_endpoint,
        talos_maintenance_port=talos.machine_port,
        talos_nodes=[s.ip for s in world.specs],
        pki=pki,
        creds=creds,
        repo_path=scratch,
        age_key_text=LAB_KEY.read_text(),
        helmfile=write_shim(directory),
        talos_context=BOOTSTRAP_TALOS_CONTEXT if bare else "",
        cluster_files=not bare,
    )


def _lab_config(
    files: LabFiles, servers: LabServers, scratch: str, ro: bool, *, bare: bool = False
) -> Config:
    """The dapper Config pointing the real backends at the lab (admin or read-only)."""
    pve = servers.pve
    talos_context = "lab-reader" if ro else "lab-admin"
    return Config(
        cluster_name="LAB",
        lab=True,
        kubeconfig=str(files.kubeconfig),
        kube_context="lab-readonly" if ro else "lab-admin",
        talosconfig=str(files.talosconfig),
        talos_context=BOOTSTRAP_TALOS_CONTEXT if bare else talos_context,
        talos_maintenance_endpoint=servers.talos.maintenance_endpoint,
        talos_maintenance_port=servers.talos.machine_port,
        talos_endpoint=servers.talos.endpoint,
        helmfile=str(files.helmfile or ""),
        proxmox=ProxmoxConfig(
            url=pve.url,
            token_id=(pve.auditor_token if ro else pve.admin_token).token_id,
            token_secret_env="",
            token_secret_file=str(files.pve_auditor_secret if ro else files.pve_admin_secret),
            ca_file=str(files.ca),
        ),
        repo_path=scratch,
        sops_age_key_file=str(files.age_key),
        read_only=ro,
        source=str(files.config_readonly if ro else files.config),
    )
