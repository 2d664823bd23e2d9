"""Talos and Proxmox as runbooks see them: synchronous calls over the real clients.

Steps run in a worker thread (the console) or the main thread (the CLI), never on the
console's event loop, so the async Talos client runs here on a private loop kept for the
run. Both clients are built on first use and closed with the run (`RunContext.resource`).
Reads that find nothing return None; writes raise BackendError with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from dapper.backends.config import Config
from dapper.backends.errors import BackendError

if TYPE_CHECKING:
    from dapper.actions.engine import RunContext
    from dapper.backends.clients.proxmox import ProxmoxBackend
    from dapper.backends.clients.talos import TalosClient
    from dapper.backends.model import EtcdMember, Vm

T = TypeVar("T")
TALOS_TIMEOUT = 10.0


class Machines:
    """One run's Talos client (mTLS and maintenance) and Proxmox backend."""

    def __init__(self, config: Config, *, talosconfig: bytes | None = None) -> None:
        """`talosconfig`: a talosconfig's text to use instead of the configured file (a
        bootstrap's, generated from the tree before the file is written)."""
        self.config = config
        self._talosconfig = talosconfig
        self._loop = asyncio.new_event_loop()
        self._talos: TalosClient | None = None
        self._pve: ProxmoxBackend | None = None

    @classmethod
    def of(cls, ctx: RunContext) -> Machines:
        return ctx.resource("machines", lambda: cls(ctx.config))

    # -- clients ---------------------------------------------------------------------------

    @property
    def talos(self) -> TalosClient:
        if self._talos is None and self._talosconfig is not None:
            from dapper.backends.clients.talos import TalosClient
            from dapper.backends.clients.talosconfig import parse_talosconfig

            self._talos = TalosClient(
                parse_talosconfig(self._talosconfig.decode(), where="(generated)"),
                read_only=self.config.read_only,
                timeout=TALOS_TIMEOUT,
                maintenance_port=self.config.talos_maintenance_port,
            )
        if self._talos is None:
            from dapper.backends.clients.talos import TalosClient

            self._talos = TalosClient.from_config(
                self.config.talosconfig or None,
                self.config.talos_context or None,
                read_only=self.config.read_only,
                timeout=TALOS_TIMEOUT,
                maintenance_port=self.config.talos_maintenance_port,
            )
        return self._talos

    @property
    def pve(self) -> ProxmoxBackend:
        if self._pve is None:
            from dapper.backends.clients.proxmox import ProxmoxBackend

            self._pve = ProxmoxBackend.from_config(self.config)
        return self._pve

    def run(self, call: Callable[[TalosClient], Awaitable[T]]) -> T:
        """Run one Talos call on the run's private loop."""
        return self._loop.run_until_complete(_awaited(call(self.talos)))

    def close(self) -> None:
        if self._talos is not None:
            talos = self._talos
            # closing must not hide the run's own result
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(talos.aclose())
        if self._pve is not None:
            self._pve.close()
        self._loop.close()

    # -- Talos -----------------------------------------------------------------------------

    def answers(self, node: str) -> bool:
        """The machine answers its Talos API with the cluster's credentials."""
        try:
            self.run(lambda t: t.hostname(node))
        except BackendError:
            return False
        return True

    def hostname(self, node: str) -> str | None:
        try:
            return self.run(lambda t: t.hostname(node))
        except BackendError:
            return None

    def etcd_members(self, through: str) -> tuple[EtcdMember, ...]:
        """The members `through` lists, each with its health and the leader marked."""
        return self.run(lambda t: t.etcd_health(through))

    def in_maintenance(self, address: str) -> bool:
        """A machine in maintenance mode answers Disks without a client certificate."""
        try:
            self.run(lambda t: t.disks(address, maintenance=True))
        except BackendError:
            return False
        return True

    def apply_in_maintenance(self, address: str, data: bytes) -> str:
        """`talosctl apply-config --insecure` (mode auto); the mode Talos chose."""
        result = self.run(lambda t: t.apply_configuration(address, data, "auto", maintenance=True))
        return str(getattr(result, "mode", "") or "reboot")

    def wait_configured(self, ctx: RunContext, hostname: str, ip: str, timeout: float) -> None:
        """Until the machine answers at `ip` with the cluster's credentials, as `hostname`
        (installed and rebooted into its config)."""
        from dapper.actions.engine import StepFailed

        def probe() -> tuple[bool, str]:
            if self.hostname(ip) == hostname:
                return True, f"{hostname} answers at {ip}"
            return False, "installing and rebooting"

        try:
            ctx.wait(f"{hostname} to install and answer at {ip}", probe, timeout=timeout)
        except StepFailed:
            raise StepFailed(
                f"{hostname} never answered at {ip} with the cluster's credentials: check "
                "that talconfig.yaml's MAC is the VM's net0 and that talsecret.sops.yaml is "
                "this cluster's"
            ) from None

    # -- Proxmox ---------------------------------------------------------------------------

    def vm_named(self, name: str) -> Vm | None:
        """The VM of that name (not a template), or None."""
        found = [v for v in self.pve.vms(with_config=True) if v.name == name and not v.template]
        return found[0] if found else None

    def vm(self, vmid: int) -> Vm | None:
        """The VM with this id (a template too), or None."""
        if not any(v.vmid == vmid for v in self.pve.vms(with_config=False)):
            return None
        return self.pve.vm(vmid)  # one VM's config, not every VM's

    def wait_task(self, upid: str, ctx: RunContext, timeout: float) -> None:
        self.pve.wait_task(upid, timeout=timeout, on_progress=ctx.progress, poll=0.5)


async def _awaited(value: Awaitable[T]) -> T:
    return await value
