"""Node labels a kubelet may not set on its own Node (the NodeRestriction admission plugin).

Talos applies `machine.nodeLabels` (and talhelper's `nodeLabels`) through the Kubernetes
API with the node's own kubelet credentials, and the kubelet's `--node-labels` go the same
way, so NodeRestriction judges them. It refuses the whole update when one label is
forbidden: one bad label keeps every label in the batch (openebs.io/engine included) off
the node.

The rule, as upstream writes it (kubernetes/kubernetes
`plugin/pkg/admission/noderestriction/admission.go` getForbiddenLabels, and
`staging/src/k8s.io/kubelet/pkg/apis/well_known_labels.go` IsKubeletLabel): a label in the
`kubernetes.io` or `k8s.io` namespaces (or a subdomain of them) is forbidden unless it is
one of the well-known kubelet labels or sits under `kubelet.kubernetes.io` or
`node.kubernetes.io` (or a subdomain of those); `node-restriction.kubernetes.io` is
always forbidden.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dapper.backends.gitops.treesource import FileSource, read_text, walk
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

TALOS_DIR = "kubernetes/bootstrap/talos"
KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
    }
)
KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
RESTRICTED_NAMESPACES = ("kubernetes.io", "k8s.io")
NODE_RESTRICTION = "node-restriction.kubernetes.io"


def _in(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def is_forbidden(key: str) -> bool:
    """True when NodeRestriction refuses a kubelet that sets label `key` on its Node."""
    namespace = key.split("/", 1)[0] if "/" in key else ""
    if _in(namespace, NODE_RESTRICTION):
        return True
    if not any(_in(namespace, d) for d in RESTRICTED_NAMESPACES):
        return False
    if key in KUBELET_LABELS:
        return False
    return not any(_in(namespace, d) for d in KUBELET_NAMESPACES)


def _reason(key: str, where: str) -> str:
    return (
        f"node label {key} ({where}) is one NodeRestriction forbids a kubelet to set "
        "(kubernetes.io/ and k8s.io/ except kubelet.kubernetes.io/, node.kubernetes.io/ and the "
        "well-known labels); Talos applies node labels with the kubelet's credentials, so the "
        "whole batch is refused: use a label outside those namespaces "
        "(e.g. node-role.home.arpa/<role>)"
    )


def _line(mapping: Any, key: Any, default: int) -> int:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _labels_in(node: Any, line: int) -> Iterator[tuple[str, int, str]]:
    """(label, line, where) for every node label a Talos/talhelper document sets."""
    if isinstance(node, dict):
        for k, v in node.items():
            at = _line(node, k, line)
            if k == "nodeLabels" and isinstance(v, dict):
                for label in v:
                    yield str(label), _line(v, label, at), "nodeLabels"
            elif k == "node-labels" and isinstance(v, str):
                for item in v.split(","):
                    label = item.split("=", 1)[0].strip()
                    if label:
                        yield label, at, "kubelet --node-labels"
            else:
                yield from _labels_in(v, at)
    elif isinstance(node, list):
        for item in node:
            yield from _labels_in(item, line)


def forbidden_node_labels(source: FileSource) -> Iterator[tuple[str, int, str]]:
    """(file, line, reason) for each forbidden label in talconfig and the Talos patches."""
    if not source.is_dir(TALOS_DIR):
        return
    yaml = YAML(typ="rt")
    for path in walk(source, TALOS_DIR):
        if not path.endswith((".yaml", ".yml")) or path.endswith((".sops.yaml", ".sops.yml")):
            continue
        try:
            docs = list(yaml.load_all(read_text(source, path)))
        except (YAMLError, ValueError):
            continue  # check_yaml reports unreadable YAML
        for doc in docs:
            for label, line, where in _labels_in(doc, 1):
                if is_forbidden(label):
                    yield path, line, _reason(label, where)
