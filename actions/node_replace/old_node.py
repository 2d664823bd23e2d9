"""Taking the old node out: drain, reset through Talos, etcd membership, Node object, VM.

Every step here looks at the OLD node only. Once the replacement VM exists (its VMID is
journaled before the clone), these steps are done by definition: the new machine takes
the same name and address, and a resumed run must not drain, reset or delete it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.node_replace.impact import etcd_view
from dapper.actions.node_replace.target import machines, old_vm_facts, resolve
from dapper.backends.errors import BackendError

NEW_VM_STEP = "new-vm"
TASK_TIMEOUT = 120.0


def replacement_begun(ctx: RunContext) -> bool:
    return ctx.out(NEW_VM_STEP, "vmid") is not None


def old_node(ctx: RunContext) -> Any | None:
    """The old Node object (the one the run first saw), or None once it is gone."""
    target = resolve(ctx)
    node = ctx.cluster.node(target.hostname)
    if node is None:
        return None
    seen = ctx.out("impact", "node_created")
    if seen is not None and node.created is not None and abs(node.created - seen) > 1:
        return None  # a new Node of the same name: the replacement registered
    return node


def _timeout(ctx: RunContext) -> float:
    return float(ctx.params.get("timeout") or 600)


def wait_for(ctx: RunContext, what: str, done: Callable[[], bool], says: tuple[str, str]) -> None:
    """A visible wait (the run's timeout) until `done`; `says` is (done, waiting)."""

    def probe() -> tuple[bool, str]:
        ok = done()
        return ok, says[0] if ok else says[1]

    ctx.wait(what, probe, timeout=_timeout(ctx))


class DrainStep(Step):
    id = "drain"
    title = "Cordon and drain the old node"

    def _answers(self, ctx: RunContext, node: Any) -> bool:
        """Worth draining: Ready, and its machine answers Talos. A node dead for less than
        the grace period still reads Ready; evicting its pods would leave them Terminating
        until a kubelet that never returns confirms."""
        return bool(node.ready == "True" and machines(ctx).answers(resolve(ctx).node.ip))

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx):
            return Check(True, "the replacement VM exists")
        node = old_node(ctx)
        if node is None:
            return Check(True, "no Node object")
        movable = [p for p in node.pods if p.owner_kind not in ("DaemonSet", "Node")]
        if node.unschedulable and not movable:
            return Check(True, "cordoned and drained")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        node = old_node(ctx)
        name = resolve(ctx).hostname
        if node is not None and not self._answers(ctx, node):
            return StepPreview(
                self.id,
                self.title,
                calls=[f"kubectl cordon {name}"],
                notes=[
                    "the node does not answer: no drain (its pods would only hang in "
                    "Terminating; they go once its Node is deleted)"
                ],
            )
        return StepPreview(
            self.id,
            self.title,
            calls=[f"kubectl drain {name} --ignore-daemonsets --delete-emptydir-data"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        node = old_node(ctx)
        if node is None:
            return {}
        name = node.name
        ctx.cluster.cordon(name)
        if not self._answers(ctx, node):
            ctx.progress(f"{name} does not answer: cordoned, not drained")
            return {"drained": False}
        try:
            report = ctx.cluster.drain(name, time.monotonic() + _timeout(ctx), ctx.progress)
        except BackendError as exc:
            raise StepFailed(exc.reason) from None
        ctx.progress(str(report))
        return {"drained": True, "report": str(report)}


class ResetStep(Step):
    id = "reset"
    title = "Reset the old node through Talos (when it answers)"

    def _answers(self, ctx: RunContext) -> bool:
        return machines(ctx).answers(resolve(ctx).node.ip)

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx):
            return Check(True, "the replacement VM exists")
        if not self._answers(ctx):
            return Check(True, "Talos does not answer: nothing to reset")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        ip = resolve(ctx).node.ip
        return StepPreview(
            self.id,
            self.title,
            calls=[f"talosctl -n {ip} reset --graceful --reboot=false (leaves etcd, wipes)"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        ip = resolve(ctx).node.ip
        machines(ctx).run(lambda t: t.reset(ip, graceful=True, reboot=False))
        return {"reset": ip}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        if not ctx.out(self.id, "reset"):
            return {}

        wait_for(
            ctx,
            "the old machine to reset",
            lambda: not self._answers(ctx),
            ("stopped answering", "still answering"),
        )
        return {}


class EtcdRemoveStep(Step):
    id = "etcd"
    title = "Remove the old member from etcd"

    def _member(self, ctx: RunContext) -> Any | None:
        name = resolve(ctx).hostname
        members, _ = etcd_view(ctx)
        found = [m for m in members if m.hostname == name]
        return found[0] if found else None

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx):
            return Check(True, "the replacement VM exists")
        if self._member(ctx) is None:
            return Check(True, "not an etcd member")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        _, through = etcd_view(ctx)
        member = self._member(ctx)
        what = f"{member.id:x}" if member is not None else "?"
        return StepPreview(
            self.id, self.title, calls=[f"talosctl -n {through} etcd remove-member {what}"]
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        member = self._member(ctx)
        if member is None:
            return {}
        target = resolve(ctx)
        _, name = etcd_view(ctx)  # a control plane that answered just now
        through = next(n.ip for n in target.other_control_planes if n.hostname == name)
        ctx.save(member=f"{member.id:x}")
        machines(ctx).run(lambda t: t.etcd_remove_member(through, member.id))
        return {"member": f"{member.id:x}"}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        wait_for(
            ctx,
            "the etcd member to go",
            lambda: self._member(ctx) is None,
            ("removed", "still a member"),
        )
        return {}


class DeleteNodeStep(Step):
    id = "delete-node"
    title = "Delete the old Kubernetes Node"

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx) or old_node(ctx) is None:
            return Check(True, "no old Node object")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id, self.title, calls=[f"kubectl delete node {resolve(ctx).hostname}"]
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        ctx.cluster.delete_node(resolve(ctx).hostname)
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        wait_for(
            ctx, "the Node object to go", lambda: old_node(ctx) is None, ("deleted", "still there")
        )
        return {}


class OldVmStep(Step):
    id = "old-vm"
    title = "Stop the old VM, then destroy it or keep it"

    def _keep(self, ctx: RunContext) -> bool:
        return ctx.params.get("old_vm") == "keep"

    def _vm(self, ctx: RunContext) -> Any | None:
        old = old_vm_facts(ctx)
        if not old:
            return None
        vm = machines(ctx).vm(int(old["vmid"]))
        if vm is None or vm.template:
            return None
        return vm

    def check(self, ctx: RunContext) -> Check:
        if replacement_begun(ctx):
            return Check(True, "the replacement VM exists")
        vm = self._vm(ctx)
        if vm is None:
            return Check(True, "no old VM")
        if self._keep(ctx) and vm.status == "stopped" and vm.name != resolve(ctx).hostname:
            return Check(True, f"VM {vm.vmid} kept stopped as {vm.name}")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        vm = self._vm(ctx)
        if vm is None:
            return StepPreview(self.id, self.title)
        calls = []
        if vm.status == "running":
            calls.append(f"qm stop {vm.vmid}")
        if self._keep(ctx):
            calls.append(f"qm set {vm.vmid} --name {kept_name(ctx)} (kept for forensics)")
            notes = ["its passthrough lines stay: do not start it while the replacement runs"]
        else:
            calls.append(f"qm destroy {vm.vmid} --purge")
            notes = []
        return StepPreview(self.id, self.title, calls=calls, notes=notes)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        vm = self._vm(ctx)
        if vm is None:
            return {}
        m = machines(ctx)
        if vm.status == "running":
            m.wait_task(m.pve.stop(vm.vmid), ctx, TASK_TIMEOUT)
        if self._keep(ctx):
            m.pve.set_config(vm.vmid, {"name": kept_name(ctx)}, sync=True)
            return {"kept": vm.vmid}
        m.wait_task(m.pve.destroy(vm.vmid), ctx, TASK_TIMEOUT)
        return {"destroyed": vm.vmid}


def kept_name(ctx: RunContext) -> str:
    return f"{resolve(ctx).hostname}-replaced"
