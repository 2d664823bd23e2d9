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

from dapper.backends.config import Config, ProxmoxConfig
from dapper.lab.clientfiles import LabFiles, write_client_files
from dapper.lab.credentials import LabCredentials
from dapper.lab.pki import Pki
from dapper.lab.world import Timings, World

log = logging.getLogger(__name__)

LAB_KEY = Path(__file__).resolve().parent / "keys" / "lab-only.agekey.txt"


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
    remote: object | None = None
    flux: object | None = None
    _tmp: str | None = None

    @property
    def dir(self) -> Path:
        return self.files.dir

    def stop(self) -> None:
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
) -> RunningLab:
    """Start the lab. `directory` receives the client files (default: a private temp dir,
    removed on stop). Without a checkout holding kubernetes/, the Flux twin is skipped.
    `scale_apps` synthetic Flux apps are added to the real tree's (default: 3 per node
    above the real 7, so a big lab has proportionally many Kustomizations and pods)."""
    from dapper.lab.clientfiles import kubeconfig_text
    from dapper.lab.kube_server import KubeApiServer
    from dapper.lab.pve_server import PveServer
    from dapper.lab.talos_server import TalosLabServer

    t0 = time.perf_counter()
    tmp = None
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="dapper-lab-")
        directory = Path(tmp)
    world = World(nodes=nodes, timings=timings)
    pki = Pki()
    creds = LabCredentials()
    servers: list = []
    try:
        kube = KubeApiServer(world, pki, creds)
        kube_port = kube.start()
        servers.append(kube)
        kube_url = f"https://127.0.0.1:{kube_port}"
        pve = PveServer(world, pki)
        pve.start()
        servers.append(pve)
        talos = TalosLabServer(
            world,
            pki,
            kubeconfig=lambda: kubeconfig_text(kube_url, pki.https_ca.cert_pem, creds).encode(),
        )
        talos.start()
        servers.append(talos)
        world.endpoints.update(
            kubernetes=kube_url,
            proxmox=pve.url,
            talos=talos.endpoint,
            talos_maintenance=talos.maintenance_endpoint,
        )
        repo = repo or find_repo()
        remote = None
        twin = None
        scratch = str(repo or "")
        if flux and repo is not None:
            from dapper.lab.flux_twin import FluxTwin
            from dapper.lab.git_remote import LabGitRemote

            remote = LabGitRemote.create(repo, directory / "git")
            scratch = str(remote.scratch_path)
            from dapper.backends.sops.file import parse_identities

            apps = default_scale_apps(nodes) if scale_apps is None else scale_apps
            twin = FluxTwin(world, remote, parse_identities(LAB_KEY.read_text()), scale_apps=apps)
            twin.start()
        files = write_client_files(
            directory,
            kube_url=kube_url,
            pve_url=pve.url,
            pve_admin=(pve.admin_token.token_id, pve.admin_token.secret),
            pve_auditor=(pve.auditor_token.token_id, pve.auditor_token.secret),
            talos_endpoint=talos.endpoint,
            talos_maintenance_endpoint=talos.maintenance_endpoint,
            talos_nodes=[s.ip for s in world.specs],
            pki=pki,
            creds=creds,
            repo_path=scratch,
            age_key_text=LAB_KEY.read_text(),
        )
        for fault in faults:
            world.inject(fault)
    except BaseException:
        for server in reversed(servers):
            server.stop()
        world.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise

    def lab_config(ro: bool) -> Config:
        return Config(
            cluster_name="LAB",
            lab=True,
            kubeconfig=str(files.kubeconfig),
            kube_context="lab-readonly" if ro else "lab-admin",
            talosconfig=str(files.talosconfig),
            talos_context="lab-reader" if ro else "lab-admin",
            talos_maintenance_endpoint=talos.maintenance_endpoint,
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

    lab = RunningLab(
        world=world,
        pki=pki,
        credentials=creds,
        files=files,
        config=lab_config(read_only),
        readonly_config=lab_config(True),
        servers=servers,
        remote=remote,
        flux=twin,
        _tmp=tmp,
    )
    log.info("lab started in %.0f ms at %s", (time.perf_counter() - t0) * 1000, directory)
    return lab
