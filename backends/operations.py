"""The console's actions on the cluster: one async facade over the backends' writers.

Only a read-write Collector has one (`collector.operations is None` when read-only), and
the backends underneath refuse writes on their own too, so read-only holds even if a
caller reaches past this class. Progress goes to a callback, one line at a time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dapper.backends.errors import ReadOnlyError
from dapper.backends.model import SourceName

if TYPE_CHECKING:
    from dapper.backends.snapshot.collector import Collector

Progress = Callable[[str], None] | None

RECONCILE_TIMEOUT = 120.0
DRAIN_TIMEOUT = 300.0
VM_TASK_TIMEOUT = 180.0


def _say(progress: Progress, line: str) -> None:
    if progress is not None:
        progress(line)


class Operations:
    """Reconcile, suspend, resume; cordon, uncordon, drain; VM start and shutdown."""

    def __init__(self, collector: Collector) -> None:
        if collector.config.read_only:
            raise ReadOnlyError("build the operations of a read-only console")
        self.collector = collector

    async def _after(self, source: str) -> None:
        await self.collector.refresh(source)

    # -- Flux ------------------------------------------------------------------------------

    async def reconcile(
        self, namespace: str, name: str, *, with_source: bool = False, progress: Progress = None
    ) -> str:
        kube = self.collector.kube()
        what = f"{namespace}/{name}"
        _say(progress, f"requesting reconcile of {what}" + (" with source" if with_source else ""))
        # with the source, as the flux CLI: its new artifact is stored before the
        # Kustomization is asked, so the Kustomization builds the new revision
        requested = await asyncio.to_thread(
            functools.partial(
                kube.reconcile,
                namespace,
                name,
                with_source=with_source,
                source_timeout=RECONCILE_TIMEOUT if with_source else None,
                on_progress=progress,
            )
        )
        _say(progress, f"waiting for {what} to handle {requested}")
        revision = await asyncio.to_thread(
            kube.wait_reconciled,
            namespace,
            name,
            requested,
            timeout=RECONCILE_TIMEOUT,
            on_progress=progress,
        )
        await self._after(SourceName.KUBERNETES)
        return f"{what} reconciled at {revision}" if revision else f"{what} reconciled"

    async def suspend(self, namespace: str, name: str) -> None:
        await asyncio.to_thread(self.collector.kube().suspend, namespace, name)
        await self._after(SourceName.KUBERNETES)

    async def resume(self, namespace: str, name: str) -> None:
        await asyncio.to_thread(self.collector.kube().resume, namespace, name)
        await self._after(SourceName.KUBERNETES)

    # -- nodes -----------------------------------------------------------------------------

    async def cordon(self, node: str) -> None:
        await asyncio.to_thread(self.collector.kube().cordon, node)
        await self._after(SourceName.KUBERNETES)

    async def uncordon(self, node: str) -> None:
        await asyncio.to_thread(self.collector.kube().uncordon, node)
        await self._after(SourceName.KUBERNETES)

    async def drain(self, node: str, *, progress: Progress = None) -> str:
        kube = self.collector.kube()
        _say(progress, f"cordoning {node}")
        report = await asyncio.to_thread(
            kube.drain, node, deadline=time.monotonic() + DRAIN_TIMEOUT, on_progress=progress
        )
        await self._after(SourceName.KUBERNETES)
        return str(report)

    # -- VMs -------------------------------------------------------------------------------

    async def _vm_task(self, verb: str, vmid: int, progress: Progress) -> None:
        pve = self.collector.proxmox()
        _say(progress, f"{verb} VM {vmid}")
        upid = await asyncio.to_thread(getattr(pve, verb), vmid)
        await asyncio.to_thread(pve.wait_task, upid, timeout=VM_TASK_TIMEOUT, on_progress=progress)
        _say(progress, f"VM {vmid}: {verb} done")
        await self._after(SourceName.PROXMOX)

    async def vm_start(self, vmid: int, *, progress: Progress = None) -> None:
        await self._vm_task("start", vmid, progress)

    async def vm_shutdown(self, vmid: int, *, progress: Progress = None) -> None:
        await self._vm_task("shutdown", vmid, progress)
