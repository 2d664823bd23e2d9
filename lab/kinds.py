"""The Kubernetes resource types the lab serves: one registry for discovery and the store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    also_served: tuple[str, ...] = ()  # older versions served alongside (no conversion needed)
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def versions(self) -> tuple[str, ...]:
        return (self.version, *self.also_served)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _t(group: str, version: str, kind: str, plural: str, namespaced: bool = True, **kw):
    return ResourceType(group, version, kind, plural, namespaced, **kw)


FLUX_KS = "kustomize.toolkit.fluxcd.io"
FLUX_SOURCE = "source.toolkit.fluxcd.io"
FLUX_HELM = "helm.toolkit.fluxcd.io"
MAYASTOR = "openebs.io"
FLUX_OPERATOR = "fluxcd.controlplane.io"

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _t("", "v1", "Namespace", "namespaces", False, short_names=("ns",), subresources=("status",)),
    _t("", "v1", "Node", "nodes", False, short_names=("no",), subresources=("status",)),
    _t("", "v1", "Pod", "pods", short_names=("po",), subresources=("status", "eviction")),
    _t("", "v1", "Secret", "secrets"),
    _t("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    _t("", "v1", "Event", "events", short_names=("ev",)),
    _t("", "v1", "Service", "services", short_names=("svc",), subresources=("status",)),
    _t(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        False,
        short_names=("pv",),
        subresources=("status",),
    ),
    _t(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=("pvc",),
        subresources=("status",),
    ),
    _t(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=("pdb",),
        subresources=("status",),
    ),
    _t(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        subresources=("status", "scale"),
    ),
    _t("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), subresources=("status",)),
    _t(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        subresources=("status", "scale"),
    ),
    _t("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), subresources=("status",)),
    _t("coordination.k8s.io", "v1", "Lease", "leases"),
    _t(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=("create",),
    ),
    _t(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        False,
        verbs=("create",),
    ),
    _t("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, short_names=("sc",)),
    _t(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        False,
        subresources=("status",),
    ),
    _t(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd", "crds"),
        subresources=("status",),
    ),
    _t(
        FLUX_KS,
        "v1",
        "Kustomization",
        "kustomizations",
        short_names=("ks",),
        subresources=("status",),
    ),
    _t(
        FLUX_SOURCE,
        "v1",
        "GitRepository",
        "gitrepositories",
        short_names=("gitrepo",),
        subresources=("status",),
    ),
    _t(
        FLUX_SOURCE,
        "v1",
        "HelmRepository",
        "helmrepositories",
        short_names=("helmrepo",),
        subresources=("status",),
    ),
    _t(
        FLUX_SOURCE,
        "v1",
        "OCIRepository",
        "ocirepositories",
        short_names=("ocirepo",),
        subresources=("status",),
        also_served=("v1beta2",),
    ),
    _t(
        FLUX_HELM,
        "v2",
        "HelmRelease",
        "helmreleases",
        short_names=("hr",),
        subresources=("status",),
    ),
    _t(
        FLUX_OPERATOR,
        "v1",
        "FluxInstance",
        "fluxinstances",
        subresources=("status",),
    ),
    _t(
        MAYASTOR, "v1beta3", "DiskPool", "diskpools", short_names=("dsp",), subresources=("status",)
    ),
)

CUSTOM_GROUPS = frozenset({FLUX_KS, FLUX_SOURCE, FLUX_HELM, FLUX_OPERATOR, MAYASTOR})


def by_kind(group: str, kind: str) -> ResourceType:
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.kind == kind:
            return rt
    raise KeyError(f"{kind}.{group or 'core'} is not served by the lab")


def split_api_version(api_version: str) -> tuple[str, str]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1')."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version
