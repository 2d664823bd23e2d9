"""JSON schemas for the Flux and Mayastor fields this project relies on.

Not the full CRDs: the required fields and their types, so a typo or a wrong type in a
Kustomization, HelmRelease, chart source or DiskPool is caught before Flux sees it.
Unknown fields are allowed (the CRDs grow); kubernetes-validate covers core kinds.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
_NAME = {"type": "string", "minLength": 1}
_REF = {"type": "object", "required": ["name"], "properties": {"name": _NAME, "namespace": _STR}}
_KREF = {
    "type": "object",
    "required": ["kind", "name"],
    "properties": {"kind": _NAME, "name": _NAME, "namespace": _STR},
}


def _kind_ref(kinds: list[str], **extra: dict[str, Any]) -> dict[str, Any]:
    """A {kind, name, ...} reference whose kind is one of `kinds`."""
    return {
        "type": "object",
        "required": ["kind", "name"],
        "properties": {"kind": {"enum": kinds}, "name": _NAME, **extra},
    }


_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "namespace": _STR,
        "labels": {"type": "object", "additionalProperties": _STR},
        "annotations": {"type": "object", "additionalProperties": _STR},
    },
}


def _obj(spec: dict[str, Any], required_spec: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _META,
            "spec": {"type": "object", "required": required_spec, "properties": spec},
        },
    }


KUSTOMIZATION = _obj(
    {
        "interval": _DURATION,
        "retryInterval": _DURATION,
        "timeout": _DURATION,
        "path": _STR,
        "prune": _BOOL,
        "wait": _BOOL,
        "suspend": _BOOL,
        "force": _BOOL,
        "targetNamespace": _STR,
        "sourceRef": _KREF,
        "dependsOn": {"type": "array", "items": _REF},
        "components": {"type": "array", "items": _STR},
        "decryption": {
            "type": "object",
            "required": ["provider"],
            "properties": {"provider": {"enum": ["sops"]}, "secretRef": _REF},
        },
        "postBuild": {
            "type": "object",
            "properties": {
                "substitute": {"type": "object", "additionalProperties": _STR},
                "substituteFrom": {
                    "type": "array",
                    "items": _kind_ref(["ConfigMap", "Secret"], optional=_BOOL),
                },
            },
        },
        "patches": {
            "type": "array",
            "items": {"type": "object", "required": ["patch"], "properties": {"patch": _STR}},
        },
        "healthChecks": {"type": "array", "items": _KREF},
        "commonMetadata": {"type": "object"},
    },
    ["interval", "sourceRef", "prune"],
)

_CHART_SPEC = {
    "type": "object",
    "required": ["chart", "sourceRef"],
    "properties": {
        "chart": _NAME,
        "version": _STR,
        "sourceRef": _kind_ref(["HelmRepository", "GitRepository", "Bucket"], namespace=_STR),
        "interval": _DURATION,
    },
}
HELMRELEASE = _obj(
    {
        "interval": _DURATION,
        "timeout": _DURATION,
        "releaseName": _STR,
        "targetNamespace": _STR,
        "chart": {"type": "object", "required": ["spec"], "properties": {"spec": _CHART_SPEC}},
        "chartRef": _kind_ref(["OCIRepository", "HelmChart"], namespace=_STR),
        "dependsOn": {"type": "array", "items": _REF},
        "values": {"type": "object"},
        "valuesFrom": {
            "type": "array",
            "items": _kind_ref(
                ["ConfigMap", "Secret"], valuesKey=_STR, targetPath=_STR, optional=_BOOL
            ),
        },
        "install": {"type": "object"},
        "upgrade": {"type": "object"},
        "suspend": _BOOL,
    },
    ["interval"],
)
HELMRELEASE["properties"]["spec"]["oneOf"] = [
    {"required": ["chart"], "not": {"required": ["chartRef"]}},
    {"required": ["chartRef"], "not": {"required": ["chart"]}},
]

HELMREPOSITORY = _obj(
    {
        "url": {"type": "string", "pattern": r"^(https?|oci)://"},
        "type": {"enum": ["default", "oci"]},
        "interval": _DURATION,
    },
    ["url", "interval"],
)
OCIREPOSITORY = _obj(
    {
        "url": {"type": "string", "pattern": r"^oci://"},
        "interval": _DURATION,
        "ref": {
            "type": "object",
            "properties": {"tag": _STR, "digest": _STR, "semver": _STR},
            "minProperties": 1,
        },
        "layerSelector": {"type": "object"},
    },
    ["url", "interval", "ref"],
)
GITREPOSITORY = _obj(
    {"url": _STR, "interval": _DURATION, "ref": {"type": "object"}}, ["url", "interval"]
)
DISKPOOL = _obj(
    {
        "node": _NAME,
        "disks": {"type": "array", "minItems": 1, "maxItems": 1, "items": _NAME},
        "topology": {"type": "object"},
    },
    ["node", "disks"],
)

# (api group, kind) -> schema; versions are checked separately (SUPPORTED_VERSIONS).
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kustomize.toolkit.fluxcd.io", "Kustomization"): KUSTOMIZATION,
    ("helm.toolkit.fluxcd.io", "HelmRelease"): HELMRELEASE,
    ("source.toolkit.fluxcd.io", "HelmRepository"): HELMREPOSITORY,
    ("source.toolkit.fluxcd.io", "OCIRepository"): OCIREPOSITORY,
    ("source.toolkit.fluxcd.io", "GitRepository"): GITREPOSITORY,
    ("openebs.io", "DiskPool"): DISKPOOL,
}
SUPPORTED_VERSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("kustomize.toolkit.fluxcd.io", "Kustomization"): ("v1",),
    ("helm.toolkit.fluxcd.io", "HelmRelease"): ("v2",),
    ("source.toolkit.fluxcd.io", "HelmRepository"): ("v1",),
    ("source.toolkit.fluxcd.io", "OCIRepository"): ("v1", "v1beta2"),
    ("source.toolkit.fluxcd.io", "GitRepository"): ("v1",),
    ("openebs.io", "DiskPool"): ("v1beta3", "v1beta2"),
}
