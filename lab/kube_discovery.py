"""Discovery documents and CRDs built from the lab's resource registry.

kubectl and client-go find resources through legacy discovery (/api, /apis/<g>/<v>); the
eviction subresource must name its own group/version (policy/v1, kind Eviction) or
`kubectl drain` falls back to plain DELETE. Custom kinds also get CustomResourceDefinition
objects so `kubectl get crd` shows them and their printer columns drive Tables.
"""

from __future__ import annotations

from dapper.lab.kinds import CUSTOM_GROUPS, MAYASTOR, RESOURCE_TYPES, ResourceType

SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.4",
    "gitCommit": "74cdb426e8b8e0a16ac6f1e1e4b2a1a1b2c3d4e5",
    "gitTreeState": "clean",
    "buildDate": "2025-08-12T18:00:00Z",
    "goVersion": "go1.24.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# subresource -> (group, version, kind or "" for the parent's kind, verbs)
_SUBRESOURCES: dict[str, tuple[str | None, str | None, str, tuple[str, ...]]] = {
    "status": (None, None, "", ("get", "patch", "update")),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
}

# printer columns of the CRDs (name, type, jsonPath), as the upstream CRDs declare them
PRINTER_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "Kustomization": [
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
    ],
    "GitRepository": [
        ("URL", "string", ".spec.url"),
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
    ],
    "HelmRepository": [
        ("URL", "string", ".spec.url"),
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
    ],
    "OCIRepository": [
        ("URL", "string", ".spec.url"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
    "HelmRelease": [
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
    ],
    "DiskPool": [
        ("Node", "string", ".spec.node"),
        ("State", "string", ".status.cr_state"),
        ("Pool_Status", "string", ".status.pool_status"),
        ("Capacity", "integer", ".status.capacity"),
        ("Used", "integer", ".status.used"),
        ("Available", "integer", ".status.available"),
    ],
}


def served_groups() -> dict[str, list[str]]:
    """group -> served versions (preferred first), in registry order."""
    out: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        versions = out.setdefault(rt.group, [])
        for v in rt.versions:
            if v not in versions:
                versions.append(v)
    return out


def api_versions(host: str) -> dict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
    }


def _group_doc(group: str, versions: list[str]) -> dict:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict:
    groups = [_group_doc(g, vs) for g, vs in served_groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict | None:
    versions = served_groups().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(group, versions)}


def resource_list(group: str, version: str) -> dict | None:
    """The APIResourceList of one group/version, subresources included."""
    resources = []
    for rt in RESOURCE_TYPES:
        if rt.group != group or version not in rt.versions:
            continue
        entry: dict = {
            "name": rt.plural,
            "singularName": rt.kind.lower(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.group in CUSTOM_GROUPS:
            entry["categories"] = ["all"] if rt.group != MAYASTOR else []
        resources.append(entry)
        for sub in rt.subresources:
            sgroup, sversion, skind, verbs = _SUBRESOURCES.get(sub, (None, None, "", ("get",)))
            sentry: dict = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": skind or rt.kind,
                "verbs": list(verbs),
            }
            if sgroup is not None:
                sentry["group"] = sgroup
                sentry["version"] = sversion
            resources.append(sentry)
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def crd_objects() -> list[dict]:
    """CustomResourceDefinitions for the custom kinds the lab serves."""
    out = []
    for rt in RESOURCE_TYPES:
        if rt.group not in CUSTOM_GROUPS:
            continue
        columns = [
            {"name": n, "type": t, "jsonPath": p} for n, t, p in PRINTER_COLUMNS.get(rt.kind, [])
        ]
        versions = [
            {
                "name": v,
                "served": True,
                "storage": v == rt.version,
                "subresources": {"status": {}} if "status" in rt.subresources else {},
                "additionalPrinterColumns": columns,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
            for v in rt.versions
        ]
        if rt.kind == "DiskPool":
            # the operator migrated stored pools to v1beta3 and stopped serving v1beta2
            versions.append({**versions[0], "name": "v1beta2", "served": False, "storage": False})
        names = {
            "kind": rt.kind,
            "listKind": f"{rt.kind}List",
            "plural": rt.plural,
            "singular": rt.kind.lower(),
            "shortNames": list(rt.short_names),
        }
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{rt.plural}.{rt.group}"},
                "spec": {
                    "group": rt.group,
                    "names": names,
                    "scope": "Namespaced" if rt.namespaced else "Cluster",
                    "versions": versions,
                },
                "status": {
                    "acceptedNames": names,
                    "storedVersions": [rt.version],
                    "conditions": [
                        {
                            "type": "Established",
                            "status": "True",
                            "reason": "InitialNamesAccepted",
                            "message": "the initial names have been accepted",
                        }
                    ],
                },
            }
        )
    return out


def printer_columns(rt: ResourceType) -> list[tuple[str, str, str]]:
    return PRINTER_COLUMNS.get(rt.kind, [])
