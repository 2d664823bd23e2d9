"""What every area of the lab world shares: the facts, one lock and one clock.

The Kubernetes, Proxmox, Talos and fault areas each hold this `WorldState` and change it
only under `lock`, so a request served by one API never sees half of another's change.
Delayed effects (a boot, a clone finishing) are queued on the `Clock`, whose thread runs
them in time order until `close()`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dapper.lab.store import ObjectStore
from dapper.lab.world.model import (
    EtcdMemberState,
    LabVm,
    Machine,
    NodeSpec,
    PciDevice,
    PciMapping,
    WriteRecord,
    node_specs,
)

log = logging.getLogger("dapper.lab.world")

LOOPBACK_BLOCKS = 8  # /24s of machine addresses: room for 2,000 machines and spares
LOOPBACK_CAPACITY = 253 * LOOPBACK_BLOCKS
NODE_MONITOR_GRACE = 50.0  # seconds: kube-controller-manager's --node-monitor-grace-period


class WorldError(Exception):
    """An action the world refuses; `code` hints the protocol status (404, 409, 412...)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Timings:
    """How long things take in the lab; short by default so tests stay quick."""

    task: float = 0.15  # a PVE task from running to stopped
    boot: float = 0.3  # VM start to Talos API up / Node Ready
    # a maintenance-mode apply: writing the image to disk before the reboot (then `boot`)
    install: float = 0.2
    shutdown: float = 0.1
    clone: float = 0.3
    reconcile_interval: float = 5.0  # the Flux twin's periodic reconcile
    reconcile_delay: float = 0.05  # from requestedAt to reconcile start
    event_history: bool = True  # seed the recent Event history a real cluster shows
    # the Flux twin writes kustomize- and helm-controller's Events as it reconciles (off
    # for a quiet lab whose pictures must not depend on how many reconciles ran)
    flux_events: bool = True
    # A node whose kubelet stops posting goes NotReady after the node-monitor grace period
    # (50 s in Kubernetes v1.32+); the lab runs that clock 12.5x faster.
    node_grace: float = 4.0
    # How long a live kubelet takes to stop a deleted pod's containers and confirm the
    # deletion (the lab's containers honour SIGTERM; never longer than the pod's grace).
    container_stop: float = 0.1
    # A Mayastor replica rebuild onto a new pool (real: minutes, by size and bandwidth).
    rebuild: float = 1.0

    def kube_seconds(self, seconds: float) -> float:
        """Kubernetes' other controller clocks, run at node_grace's pace so that their order
        and relative times stay real: the 300 s default NoExecute tolerations, the pod GC's
        40 s quarantine and a pod's terminationGracePeriodSeconds. With the default
        node_grace (4 s for 50 s) a 300 s toleration lasts 24 s and the quarantine 3.2 s."""
        return seconds * self.node_grace / NODE_MONITOR_GRACE


class Clock:
    """Wall time for timestamps and a timer thread for delayed effects, one per world.

    Timers run on the clock's own thread, outside the lock (each takes it as needed); a
    timer that raises is logged and the clock keeps going.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lab-world", daemon=True)

    def now(self) -> float:
        """Seconds since the epoch, for the timestamps the APIs report."""
        return time.time()

    def start(self) -> None:
        self._thread.start()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` on the clock's thread after `delay` seconds (0: as soon as possible)."""
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (
                    not self._timers or self._timers[0][0] > time.monotonic()
                ):
                    wait = self._timers[0][0] - time.monotonic() if self._timers else None
                    self._wake.wait(wait)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:  # a failed timer must not kill the world
                log.exception("lab world timer failed")

    def stop(self) -> None:
        """Stop running timers; pending ones are dropped."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()

    def join(self) -> None:
        """Wait for the thread to end (unless called from a timer, on that thread)."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)


class WorldState:
    """The facts of the twin: Kubernetes objects, PCI devices, VMs, machines, etcd, faults."""

    def loopback_address(self, index: int) -> str:
        """The `index`th machine address of the lab's loopback range (.2-.254 of each /24;
        the first /24's .1 holds the machines' port)."""
        a, b = self._loopback_net
        block, host = divmod(index % LOOPBACK_CAPACITY, 253)
        return f"127.{a}.{b + block}.{2 + host}"

    def __init__(self, nodes: int, timings: Timings | None, seed: int) -> None:
        self.lock = threading.RLock()
        self.clock = Clock(self.lock)
        self.timings = timings or Timings()
        self.rng = random.Random(seed)
        self.store = ObjectStore()
        # the Flux twin runs and writes kustomize-controller's Events itself (the start-up
        # history then leaves Kustomizations to it)
        self.flux_events = False
        self.specs: list[NodeSpec] = node_specs(nodes)
        self.pci: dict[str, PciDevice] = {}
        self.vms: dict[int, LabVm] = {}
        self.pci_mappings: dict[str, PciMapping] = {}  # /cluster/mapping/pci, by id
        self.isos: dict[str, int] = {}  # ISO volume id on storage `local` -> size in bytes
        self.machines: dict[str, Machine] = {}  # by IP
        self.etcd: dict[int, EtcdMemberState] = {}
        self.etcd_leader: int = 0  # member id; 0: the first healthy voter by id
        # The cluster's secrets a machine config must carry to join: the OS CA
        # (.machine.ca.crt; set by the runtime from the tree's secret bundle or by the
        # Talos server from its PKI; "" accepts any CA), the trustd token (.machine.token)
        # and the bootstrap token (.cluster.token). Without a bundle both tokens are the
        # one generated below.
        self.cluster_os_ca = ""
        # Where each machine's own address is on this host: LOOPBACK_BLOCKS loopback /24s
        # of the lab's own (127.0.0.0/8 is all loopback on Linux; 2,000 machines need
        # eight), drawn from the OS so that labs running side by side do not collide; the
        # guest agent reports these addresses. `loopback_prefix` is the first /24.
        spare = random.SystemRandom()
        self._loopback_net = (spare.randint(2, 254), spare.randint(0, 255 - LOOPBACK_BLOCKS))
        self.loopback_prefix = "127.{}.{}.".format(*self._loopback_net)
        self.lab_addresses: dict[str, str] = {}  # machine IP -> its loopback address
        self.next_loopback = 0  # the index where the next loopback address is looked for
        token = random.Random(f"cluster-token-{seed}")  # not self.rng: its draws stay as they were
        self.cluster_token = f"{token.getrandbits(24):06x}.{token.getrandbits(64):016x}"
        self.machine_token = self.cluster_token
        # The SSD behind each storage HBA, named by the host it was first seen in (its WWN
        # derives from that name): the disk follows the controller to whichever VM gets it.
        self.hba_disk_seed: dict[str, str] = {}
        self.faults: set[str] = set()  # the active faults, as injected ("api-down:talos")
        self.writes: list[WriteRecord] = []
        self.endpoints: dict[str, str] = {}  # filled by the runtime: kubernetes url, ca pem...
        self.started = self.clock.now()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        self.clock.later(delay, fn)

    def record_write(self, api: str, op: str, identity: str) -> None:
        """Audit a mutating request; read-only tests assert there are none."""
        with self.lock:
            self.writes.append(WriteRecord(self.clock.now(), api, op, identity))

    def spec_of(self, hostname: str) -> NodeSpec | None:
        return next((s for s in self.specs if s.hostname == hostname), None)
