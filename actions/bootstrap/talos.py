"""Talos: the talosconfig, every machine config applied in maintenance mode, etcd
bootstrapped exactly once, and the kubeconfig fetched through Talos.

Configs and the talosconfig are generated from the tree in memory (talsecret.sops.yaml
decrypted in memory only); the run talks to Talos with that talosconfig before the file
exists, so previews never need a file the run has not written yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dapper.actions.bootstrap.host import configured
from dapper.actions.bootstrap.plan import (
    first_control_plane,
    kubeconfig_path,
    machines,
    plans,
    talconfig,
    talosconfig_path,
    timeout,
)
from dapper.actions.bootstrap.talsecret import pending_bundle
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.machines import Machines
from dapper.actions.preflight import identities
from dapper.backends.errors import BackendError
from dapper.backends.private_files import open_private


def generated(ctx: RunContext) -> Any:
    """Every machine config and a talosconfig, from the tree (cached for the run)."""
    found = ctx.memory.get("generated")
    if found is None:
        from dapper.backends.talosgen.generate import generate_configs

        try:
            found = generate_configs(
                ctx.root,
                identities(ctx),
                talos_endpoint=ctx.config.talos_endpoint,
                bundle=pending_bundle(ctx),
            )
        except BackendError as exc:
            raise StepFailed(exc.reason) from None
        ctx.memory["generated"] = found
    return found


def use_generated_talosconfig(ctx: RunContext) -> Machines:
    """The run's Machines, talking Talos with the generated talosconfig."""
    return ctx.resource(
        "machines", lambda: Machines(ctx.config, talosconfig=generated(ctx).talosconfig)
    )


def write_private(path: Path, data: bytes) -> None:
    """`data` to `path`, 0600 from the start (credentials), via a temp file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _talosconfig_ca(path: Path) -> bytes | None:
    from dapper.backends.clients.talosconfig import load_talosconfig

    try:
        return load_talosconfig(path).ca_pem
    except BackendError:
        return None


class TalosconfigStep(Step):
    id = "talosconfig"
    title = "Write the talosconfig (generated from talsecret.sops.yaml)"

    def _want_ca(self, ctx: RunContext) -> bytes:
        from dapper.backends.clients.talosconfig import parse_talosconfig

        return parse_talosconfig(generated(ctx).talosconfig.decode()).ca_pem

    def check(self, ctx: RunContext) -> Check:
        path = talosconfig_path(ctx)
        if path.exists() and _talosconfig_ca(path) == self._want_ca(ctx):
            return Check(True, f"{path} is this cluster's")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        path = talosconfig_path(ctx)
        note = [f"{path} exists and is replaced (another cluster's CA)"] if path.exists() else []
        return StepPreview(
            self.id,
            self.title,
            calls=[f"write {path} (0600): an os:admin certificate from the tree's Talos CA"],
            notes=note,
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        path = talosconfig_path(ctx)
        write_private(path, generated(ctx).talosconfig)
        return {"path": str(path)}


class ApplyConfigsStep(Step):
    id = "apply-configs"
    title = "Apply every machine config in maintenance mode"

    def _pending(self, ctx: RunContext) -> list[Any]:
        return [p for p in plans(ctx) if not configured(ctx, p.name)]

    def check(self, ctx: RunContext) -> Check:
        if self._pending(ctx):
            return Check(False)
        return Check(True, "every node runs its config")

    def preview(self, ctx: RunContext) -> StepPreview:
        names = generated(ctx).file_names  # refuses now (one line) if the tree is wrong
        calls = [
            f"talosctl apply-config --insecure -n <{p.name}'s maintenance address> "
            f"--file {names[p.name]} (generated in memory)"
            for p in self._pending(ctx)
        ]
        calls.append("wait for each to install, reboot and answer at its talconfig address")
        return StepPreview(self.id, self.title, calls=calls)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        addresses = ctx.out("boot", "addresses") or {}
        applied: list[str] = list(ctx.out(self.id, "applied") or [])
        m = machines(ctx)
        for p in self._pending(ctx):
            ctx.checkpoint()
            address = addresses.get(p.name)
            if not address:
                raise StepFailed(f"no maintenance-mode address journaled for {p.name}")
            if not m.in_maintenance(address):
                if p.name in applied:
                    continue  # applied before a crash: it is installing
                raise StepFailed(f"{p.name} no longer answers in maintenance mode at {address}")
            applied.append(p.name)
            ctx.save(applied=applied)
            mode = m.apply_in_maintenance(address, generated(ctx).config_for(p.name))
            ctx.progress(f"{p.name}: applied at {address} ({mode})")
        return {"applied": applied}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        m = machines(ctx)
        nodes = {n.hostname: n for n in talconfig(ctx).nodes}
        for p in plans(ctx):
            m.wait_configured(ctx, p.name, nodes[p.name].ip, timeout(ctx))
        return {}


def etcd_members(ctx: RunContext) -> tuple[Any, ...]:
    """The etcd members any control plane lists (asked in talconfig order); () while
    etcd runs nowhere. Asking only the first would miss a cluster that machine left, and
    a Bootstrap there would start a second cluster."""
    m = machines(ctx)
    for node in talconfig(ctx).nodes:
        if not node.control_plane:
            continue
        try:
            members = m.etcd_members(node.ip)
        except BackendError:
            continue
        if members:
            return members
    return ()


class EtcdBootstrapStep(Step):
    """Bootstrap is called only after etcd was checked and found empty: a resumed run
    finds the member the first call made and never calls it again."""

    id = "etcd"
    title = "Bootstrap etcd on the first control plane (once)"

    def check(self, ctx: RunContext) -> Check:
        members = etcd_members(ctx)
        if members:
            return Check(True, f"etcd has {len(members)} member(s)")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        node = first_control_plane(ctx)
        return StepPreview(
            self.id,
            self.title,
            calls=[f"talosctl bootstrap -n {node.ip} ({node.hostname}), after etcd is checked"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        node = first_control_plane(ctx)
        m = machines(ctx)

        def attempt() -> tuple[bool, str]:
            members = etcd_members(ctx)
            if members and not any(x.hostname == node.hostname for x in members):
                raise StepFailed(
                    f"etcd runs without {node.hostname} ({', '.join(x.hostname for x in members)})"
                    ": a Bootstrap there would start a second cluster; join it instead"
                )
            if members:
                return True, "etcd has a member"
            try:
                m.run(lambda t: t.bootstrap(node.ip))
            except BackendError as exc:
                if "not empty" in exc.reason or "already" in exc.reason.lower():
                    return True, exc.reason
                return False, exc.reason  # etcd not ready for it yet: Talos says why
            return True, f"bootstrapped on {node.hostname}"

        ctx.wait(f"etcd bootstrap on {node.hostname}", attempt, timeout=timeout(ctx))
        return {"node": node.hostname}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        def probe() -> tuple[bool, str]:
            members = etcd_members(ctx)
            return bool(members), f"{len(members)} member(s)"

        ctx.wait("etcd to list its first member", probe, timeout=timeout(ctx))
        return {}


def kube_answers(ctx: RunContext) -> str:
    """ "" when the written kubeconfig reaches the API server, else why not."""
    from dapper.backends.clients.kube import KubeBackend

    path = kubeconfig_path(ctx)
    if not path.exists():
        return f"{path} does not exist"
    try:
        kube = KubeBackend.from_kubeconfig(path, context=ctx.config.kube_context or None)
    except BackendError as exc:
        return exc.reason
    try:
        kube.namespace_uid("kube-system")
    except BackendError as exc:
        return exc.reason
    finally:
        kube.close()
    return ""


class KubeconfigStep(Step):
    id = "kubeconfig"
    title = "Wait for the Kubernetes API and write the kubeconfig (through Talos)"

    def check(self, ctx: RunContext) -> Check:
        if kube_answers(ctx):
            return Check(False)
        return Check(True, f"{kubeconfig_path(ctx)} reaches the API server")

    def preview(self, ctx: RunContext) -> StepPreview:
        node = first_control_plane(ctx)
        return StepPreview(
            self.id,
            self.title,
            calls=[
                f"talosctl kubeconfig -n {node.ip} (retried until the API server is up)",
                f"write {kubeconfig_path(ctx)} (0600)",
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        node = first_control_plane(ctx)
        m = machines(ctx)
        got: dict[str, bytes] = {}

        def fetch() -> tuple[bool, str]:
            try:
                got["data"] = m.run(lambda t: t.kubeconfig(node.ip))
            except BackendError as exc:
                return False, exc.reason
            return True, "kubeconfig issued"

        ctx.wait(f"a kubeconfig from {node.hostname}", fetch, timeout=timeout(ctx))
        write_private(kubeconfig_path(ctx), got["data"])
        return {"path": str(kubeconfig_path(ctx))}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        def probe() -> tuple[bool, str]:
            why = kube_answers(ctx)
            return not why, why or "the API server answers"

        ctx.wait("the Kubernetes API", probe, timeout=timeout(ctx))
        return {}
