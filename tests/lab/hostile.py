"""Hostile cluster text seeded into a running lab through each of its sources, for the
tests that prove the console and the CLI show it and never obey it."""

from __future__ import annotations

from dapper.lab.runtime import RunningLab

ESCAPES = "\x1b[2J\x1b]0;PWNED\x07\x9b31m\u202e\r\x08[/]"


def seed_hostile(lab: RunningLab) -> None:
    """A NotReady Node and a failing Kustomization (Kubernetes), a stopped VM's name
    (Proxmox) and a service state (Talos), each carrying terminal escapes and markup."""
    world = lab.world
    store = world.store
    # Kubernetes: a NotReady node whose name and condition carry escapes, and a failing
    # Kustomization and an Event whose messages do
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": f"evil{ESCAPES}"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "Evil",
                     "message": f"kubelet says {ESCAPES}"}
                ]
            },
        }
    )  # fmt: skip
    store.create(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "evil", "namespace": "flux-system"},
            "spec": {"path": "./x", "interval": "1h", "prune": True},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "BuildFailed",
                     "message": f"kustomize build failed: {ESCAPES}",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]
            },
        }
    )  # fmt: skip
    # Proxmox: a stopped VM with a hostile name
    vm = world.vm(104)
    vm.name = f"vm{ESCAPES}"
    world.vm_stop(104)
    # Talos: a service state as ServiceList reports it
    world.machine("talos-node-large-2").service_overrides["kubelet"] = f"Stuck{ESCAPES}"
