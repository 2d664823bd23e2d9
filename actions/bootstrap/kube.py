"""Kubernetes before Flux: every node registered (NotReady until the CNI runs), a
Namespace per app directory, and the secrets Flux needs to start, applied server-side.

SOPS files are decrypted in memory and sent to the API; no plaintext reaches disk.
"""

from __future__ import annotations

from typing import Any

from dapper.actions.bootstrap.plan import kubeconfig_path, plans, timeout
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.actions.preflight import identities
from dapper.backends.errors import BackendError

FLUX_NS = "flux-system"
APPS = "kubernetes/apps"
COMMON = "kubernetes/components/common"
SECRET_FILES = (
    f"{COMMON}/sops/sops-age.sops.yaml",
    f"{COMMON}/substitutions/cluster-secrets.sops.yaml",
)
SETTINGS_FILE = f"{COMMON}/substitutions/cluster-settings.yaml"


def kube(ctx: RunContext) -> Any:
    """The run's KubeBackend on the written kubeconfig (built once it exists)."""
    from dapper.backends.clients.kube import KubeBackend

    def build() -> Any:
        return KubeBackend.from_kubeconfig(
            kubeconfig_path(ctx),
            context=ctx.config.kube_context or None,
            read_only=ctx.config.read_only,
            timeout=10.0,
        )

    return ctx.resource("bootstrap-kube", build)


def _nodes(ctx: RunContext) -> dict[str, str]:
    """Node name -> Ready status, for the planned nodes that registered."""
    wanted = {p.name for p in plans(ctx)}
    try:
        nodes = kube(ctx).nodes()
    except BackendError:
        return {}
    return {n.name: n.ready for n in nodes if n.name in wanted}


class NodesRegisteredStep(Step):
    id = "nodes"
    title = "Wait until every node has registered (NotReady until the CNI runs)"

    def check(self, ctx: RunContext) -> Check:
        if not kubeconfig_path(ctx).exists():
            return Check(False)
        found = _nodes(ctx)
        if len(found) == len(plans(ctx)):
            return Check(True, f"{len(found)} nodes registered")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(self.id, self.title, calls=["kubectl get nodes (until all are there)"])

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        want = len(plans(ctx))

        def probe() -> tuple[bool, str]:
            found = _nodes(ctx)
            return len(found) == want, f"{len(found)}/{want} registered"

        ctx.wait("every node to register", probe, timeout=timeout(ctx))
        return {}


def app_namespaces(ctx: RunContext) -> list[str]:
    return sorted(p.name for p in (ctx.root / APPS).iterdir() if p.is_dir())


class NamespacesStep(Step):
    id = "namespaces"
    title = "Create a Namespace for every directory under kubernetes/apps"

    def _missing(self, ctx: RunContext) -> list[str]:
        if not kubeconfig_path(ctx).exists():
            return app_namespaces(ctx)
        try:
            have = kube(ctx).core_names("Namespace")
        except BackendError:
            return app_namespaces(ctx)
        return [n for n in app_namespaces(ctx) if n not in have]

    def check(self, ctx: RunContext) -> Check:
        if self._missing(ctx):
            return Check(False)
        return Check(True, f"{len(app_namespaces(ctx))} namespaces exist")

    def preview(self, ctx: RunContext) -> StepPreview:
        names = ", ".join(self._missing(ctx))
        return StepPreview(self.id, self.title, calls=[f"kubectl apply --server-side: {names}"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        for name in self._missing(ctx):
            kube(ctx).apply_core(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        missing = self._missing(ctx)
        if missing:
            raise StepFailed(f"namespaces still missing: {', '.join(missing)}")
        return {}


def _objects(ctx: RunContext) -> list[dict[str, Any]]:
    """sops-age and cluster-secrets (decrypted in memory) and cluster-settings, each in
    flux-system."""
    from dapper.backends.sops.errors import SopsError
    from dapper.backends.sops.file import decrypt_file, load_yaml_documents
    from dapper.backends.talosgen.yamlio import to_plain

    out: list[dict[str, Any]] = []
    for rel in SECRET_FILES:
        try:
            docs = decrypt_file(ctx.root / rel, identities(ctx)).documents
        except SopsError as exc:
            raise StepFailed(f"{rel}: {exc}") from None
        out += [to_plain(d) for d in docs if isinstance(d, dict)]
    text = (ctx.root / SETTINGS_FILE).read_text()
    out += [to_plain(d) for d in load_yaml_documents(text, SETTINGS_FILE) if isinstance(d, dict)]
    for obj in out:
        obj.setdefault("metadata", {})["namespace"] = FLUX_NS
        obj.setdefault("apiVersion", "v1")
    return out


def _names(ctx: RunContext) -> list[tuple[str, str]]:
    """(kind, name) of what this step applies, read without decrypting anything."""
    from dapper.backends.sops.file import load_yaml_documents

    out = []
    for rel in (*SECRET_FILES, SETTINGS_FILE):
        for doc in load_yaml_documents((ctx.root / rel).read_text(), rel):
            if isinstance(doc, dict):
                out.append((str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))))
    return out


class FluxSecretsStep(Step):
    id = "flux-secrets"
    title = "Apply sops-age, cluster-secrets and cluster-settings into flux-system"

    def _missing(self, ctx: RunContext) -> list[str]:
        wanted = _names(ctx)
        if not kubeconfig_path(ctx).exists():
            return [n for _, n in wanted]
        try:
            have = {k: kube(ctx).core_names(k, FLUX_NS) for k in {k for k, _ in wanted}}
        except BackendError:
            return [n for _, n in wanted]
        return [n for k, n in wanted if n not in have[k]]

    def check(self, ctx: RunContext) -> Check:
        if self._missing(ctx):
            return Check(False)
        return Check(True, "they exist in flux-system")

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id,
            self.title,
            calls=[
                f"sops -d {rel} (in memory) | kubectl apply --server-side -n {FLUX_NS}"
                for rel in SECRET_FILES
            ]
            + [f"kubectl apply --server-side -n {FLUX_NS} -f {SETTINGS_FILE}"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        for obj in _objects(ctx):
            kube(ctx).apply_core(obj)
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        missing = self._missing(ctx)
        if missing:
            raise StepFailed(f"still missing in {FLUX_NS}: {', '.join(missing)}")
        return {}
