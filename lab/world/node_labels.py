"""A Node's labels from its machine, as Talos v1.10/1.11 puts them there.

Talos's NodeLabelSpecController turns the running config's `machine.nodeLabels` (plus
`node-role.kubernetes.io/control-plane` on a control plane) into label specs, and its
NodeApplyController writes them onto the Node: a label not on the Node yet is taken over,
one with the same value is adopted, one with another value is changed only when Talos owns
it, and an owned label no longer in the config is removed. What it owns it records in the
`talos.dev/owned-labels` annotation (a sorted JSON list; no annotation when it owns none).

A control plane writes with an admin client; a worker with its kubelet's credentials, so
the NodeRestriction admission plugin judges the update and refuses it whole when it adds,
changes or removes a label the kubelet may not touch (`is_forbidden`, upstream's list):
then nothing of the batch lands (Talos retries and logs the error).
"""

from __future__ import annotations

import json
from typing import Any

from dapper.backends.gitops.nodelabels import is_forbidden
from dapper.lab.world.model import NodeSpec

OWNED_LABELS = "talos.dev/owned-labels"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# The tree's Talos patches (kubernetes/bootstrap/talos/patches/{storage,gpu}) and the
# generator's control-plane default: what the seeded machines' configs carry.
STORAGE_LABELS = {
    "openebs.io/engine": "mayastor",
    "node.kubernetes.io/instance-type": "mayastor-storage",
    "node-role.home.arpa/storage": "ssd",
    "node-role.home.arpa/worker": "worker",
}
GPU_LABELS = {"node-role.home.arpa/gpu": "p100"}
CONTROL_PLANE_NODE_LABELS = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}


def seeded_node_labels(spec: NodeSpec) -> dict[str, str]:
    """`machine.nodeLabels` of a seeded machine's config, from its role in the tree."""
    labels: dict[str, str] = {}
    if spec.role == "controlplane":
        labels.update(CONTROL_PLANE_NODE_LABELS)
    if spec.storage:
        labels.update(STORAGE_LABELS)
    if spec.gpu:
        labels.update(GPU_LABELS)
    return labels


def label_specs(document: dict[str, Any] | None) -> dict[str, str]:
    """The NodeLabelSpecs a running config gives: its nodeLabels, and the control-plane
    role label on a control plane."""
    machine = (document or {}).get("machine") or {}
    if not isinstance(machine, dict):
        return {}
    raw = machine.get("nodeLabels") or {}
    specs = (
        {str(k): "" if v is None else str(v) for k, v in raw.items()}
        if isinstance(raw, dict)
        else {}
    )
    if machine.get("type") in ("controlplane", "init"):
        specs[CONTROL_PLANE_LABEL] = ""
    return specs


def owned(annotations: dict[str, str] | None) -> set[str]:
    text = (annotations or {}).get(OWNED_LABELS) or ""
    try:
        keys = json.loads(text) if text else []
    except ValueError:
        keys = []
    return {str(k) for k in keys} if isinstance(keys, list) else set()


def apply_labels(
    labels: dict[str, str], owned_keys: set[str], specs: dict[str, str]
) -> tuple[dict[str, str], set[str]]:
    """(labels, owned) after one NodeApplyController pass over `specs`."""
    out = dict(labels)
    mine = set(owned_keys)
    for key, value in specs.items():
        if key not in out or out[key] == value:
            out[key] = value
            mine.add(key)
        elif key in mine:
            out[key] = value
    for key in sorted(mine - set(specs)):
        out.pop(key, None)
        mine.discard(key)
    return out, mine


def set_owned(annotations: dict[str, str], owned_keys: set[str]) -> None:
    if owned_keys:
        annotations[OWNED_LABELS] = json.dumps(sorted(owned_keys), separators=(",", ":"))
    else:
        annotations.pop(OWNED_LABELS, None)


def forbidden_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The labels a node identity added, changed or removed that NodeRestriction refuses
    (sorted, as the admission error lists them)."""
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    return sorted(k for k in changed if is_forbidden(k))


def restriction_error(node: str, forbidden: list[str]) -> str:
    """The API server's 403 text for a node update NodeRestriction refuses."""
    return f'nodes "{node}" is forbidden: is not allowed to modify labels: {", ".join(forbidden)}'


def talos_apply(node: dict, specs: dict[str, str], *, restricted: bool) -> str:
    """One NodeApplyController update of `node` (edited in place): '' when it landed or
    there was nothing to change, else the API server's refusal (and `node` untouched)."""
    meta = node.setdefault("metadata", {})
    old = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    labels, mine = apply_labels(old, owned(annotations), specs)
    set_owned(annotations, mine)
    if labels == old and annotations == (meta.get("annotations") or {}):
        return ""
    if restricted and (bad := forbidden_changes(old, labels)):
        return restriction_error(str(meta.get("name", "")), bad)
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return ""
