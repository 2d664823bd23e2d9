"""The Talos source: every machine's stage, services, etcd members and resources.

The machines asked are the nodes Kubernetes lists (or the caller's or the talosconfig's),
plus, at its own address, the machine of each running VM no node matches: a new VM in
maintenance mode is in no cluster yet, and the Proxmox source gives its guest agent's
addresses (`Vm.addresses`, from that source's latest data). Those are dialled directly,
as talosctl --insecure does (never through a shared endpoint); an address where nothing
answered is asked again only after `PROBE_RETRY`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from dapper.backends.errors import BackendError
from dapper.backends.model import SourceName, TalosMachine
from dapper.backends.snapshot.join import KubeData, ProxmoxData, SnapshotParts, TalosData
from dapper.backends.snapshot.sources import IMPORTS, SourceContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from dapper.backends.clients.talos import TalosClient


# A sweep asks at most this many running machines (the stalest first) besides those not
# seen yet or not running; the others keep their last answer. At 7 nodes every machine is
# asked every sweep; at 500, each running machine about every 50 s (about 4 calls each).
SWEEP_BUDGET = 48
# Once every machine a sweep asks has answered before, the sweep ends this long after it
# began (a refresh of the pane, not of the fleet: those still out are asked first next
# time). At 500 nodes against a busy lab, sweeps took 3-13 s without it.
SWEEP_SECONDS = 0.5
# Seconds before a VM address where no machine answered is asked again: short, since a
# booting machine's agent may report its address a moment before apid listens there.
PROBE_RETRY = 10.0
PROBES_PER_SWEEP = 16  # node-less VMs' machines asked at most per sweep


class TalosSource:
    name = SourceName.TALOS
    interval = 5.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self._client: TalosClient | None = None
        self._seen: dict[str, tuple[float, TalosMachine]] = {}  # node -> (asked at, answer)
        self._direct: TalosClient | None = None
        self._silent: dict[str, float] = {}  # VM address -> when nothing answered there

    def client(self) -> TalosClient:
        """The Talos client, built on first use from the talosconfig."""
        with IMPORTS:
            if self._client is None:
                from dapper.backends.clients.talos import TalosClient

                config = self.context.config
                self._client = TalosClient.from_config(
                    config.talosconfig or None,
                    config.talos_context or None,
                    read_only=config.read_only,
                    timeout=self.context.timeout,
                    maintenance_endpoint=config.talos_maintenance_endpoint or None,
                )
            return self._client

    def direct(self) -> TalosClient:
        """A client that reaches maintenance machines at their own address (the guest
        agent's), never through the configured maintenance endpoint."""
        with IMPORTS:
            if self._direct is None:
                from dapper.backends.clients.talos import TalosClient

                config = self.context.config
                self._direct = TalosClient.from_config(
                    config.talosconfig or None,
                    config.talos_context or None,
                    read_only=True,
                    timeout=self.context.timeout,
                    maintenance_port=config.talos_maintenance_port,
                )
            return self._direct

    def refresh_after(self) -> tuple[str, ...]:
        """Kubernetes first when neither the caller nor the talosconfig names nodes (the
        machines to ask are the nodes Kubernetes lists), until Kubernetes has answered
        once: after that its last node list serves, as it does the Proxmox source, and a
        full refresh pays for the slower of the two, not both in turn."""
        if self.context.talos_nodes is not None or self._talosconfig_nodes():
            return ()
        if isinstance(self.context.latest(SourceName.KUBERNETES), KubeData):
            return ()
        return (SourceName.KUBERNETES,)

    def _talosconfig_nodes(self) -> tuple[str, ...]:
        """The context's nodes, read without building the client (that imports grpc)."""
        from dapper.backends.clients.talosconfig import load_talosconfig

        config = self.context.config
        try:
            if self._client is not None:
                return tuple(self._client.context.nodes)
            return load_talosconfig(config.talosconfig or None, config.talos_context or None).nodes
        except Exception:  # an unreadable talosconfig degrades the talos source on fetch
            return ()

    async def fetch(self, *, fresh: bool = False) -> TalosData:
        t = self.client()
        nodes = self.context.talos_nodes
        kube = self.context.latest(SourceName.KUBERNETES)
        if nodes is None and isinstance(kube, KubeData) and kube.nodes:
            # Every node Kubernetes knows, plus any the talosconfig names (maintenance ones).
            known = [n.internal_ip or n.name for n in kube.nodes]
            nodes = tuple(dict.fromkeys([*known, *t.context.nodes]))
        targets = tuple(nodes if nodes is not None else t.context.nodes)
        asked = self._due(targets, fresh)
        answers: list[TalosMachine] = []

        def keep(machine: TalosMachine) -> None:
            answers.append(machine)
            self._seen[machine.node] = (time.monotonic(), machine)

        await self._sweep(t, asked, keep)
        loose = await self._vm_machines(set(targets))
        if not answers and asked and not loose:
            raise BackendError("no Talos machine answered in time")
        everyone = len(answers) == len(asked)
        if everyone and not loose and all(m.stage == "unreachable" for m in answers):
            raise BackendError(answers[0].error or "no Talos machine answered")
        self._seen = {n: self._seen[n] for n in targets if n in self._seen}
        kept = tuple(self._seen[n][1] for n in targets if n in self._seen)
        return TalosData(machines=(*kept, *loose))

    async def _sweep(
        self, t: TalosClient, asked: tuple[str, ...], keep: Callable[[TalosMachine], None]
    ) -> None:
        """Ask `asked`, keeping each answer as it comes. A sweep has a time budget: when
        every machine asked has answered before, it ends SWEEP_SECONDS in (once one has
        answered: a Talos API that answers nothing is an error after the timeout, not an
        old answer kept); a sweep asking a machine for the first time waits up to the
        timeout. Whoever did not answer is asked first next time."""
        heard = asyncio.Event()

        def answered(machine: TalosMachine) -> None:
            keep(machine)
            heard.set()

        timeout = self.context.timeout
        sweep = asyncio.ensure_future(t.machines(asked, timeout=timeout, on_answer=answered))
        first = asyncio.ensure_future(heard.wait())
        budget = SWEEP_SECONDS if all(n in self._seen for n in asked) else timeout
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({sweep}, timeout=budget)
                if not sweep.done() and not heard.is_set():
                    await asyncio.wait({sweep, first}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            pass
        finally:
            for task in (sweep, first):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await sweep

    def _due(self, targets: tuple[str, ...], fresh: bool) -> tuple[str, ...]:
        """Who is asked this sweep: everyone when `fresh`; else every machine not seen yet
        or not running, then the running ones that were asked longest ago, up to the
        budget."""
        if fresh:
            return targets
        urgent = [n for n in targets if n not in self._seen or self._seen[n][1].stage != "running"]
        skip = set(urgent)  # a set: at 500 machines a list made this sweep quadratic
        running = sorted((n for n in targets if n not in skip), key=lambda n: self._seen[n][0])
        return (*urgent, *running[:SWEEP_BUDGET])

    async def _vm_machines(self, asked: set[str]) -> tuple[TalosMachine, ...]:
        """The machines at the guest-agent addresses of node-less running VMs (see module)."""
        proxmox = self.context.latest(SourceName.PROXMOX)
        if not isinstance(proxmox, ProxmoxData):
            return ()
        now = time.monotonic()
        self._silent = {a: t for a, t in self._silent.items() if now - t < PROBE_RETRY}
        targets: list[str] = []
        for vm in proxmox.vms:
            address = next((a for a in vm.addresses if a not in asked), None)
            if vm.status != "running" or address is None:
                continue
            if address in self._silent:
                continue
            targets.append(address)
            if len(targets) == PROBES_PER_SWEEP:
                break
        if not targets:
            return ()
        found = await self.direct().machines(targets, timeout=self.context.timeout)
        for m in found:
            if m.stage == "unreachable":
                self._silent[m.node] = now
            else:
                self._silent.pop(m.node, None)
        return tuple(m for m in found if m.stage != "unreachable")

    def feed(self, parts: SnapshotParts, data: object) -> None:
        assert isinstance(data, TalosData)
        parts.talos = data

    async def close(self) -> None:
        for client in (self._client, self._direct):
            if client is not None:
                await client.aclose()
