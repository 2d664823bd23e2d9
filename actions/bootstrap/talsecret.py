"""talsecret.sops.yaml: generated when the tree has none (a new cluster), encrypted under
its .sops.yaml rule, then committed and pushed.

The bundle is made in memory once per run, so the previews, the configs and the file all
hold the same one; the file is written encrypted only (`write_encrypted` refuses
plaintext). A resumed run finds the file and reads it from there.
"""

from __future__ import annotations

from typing import Any

from dapper.actions.common_steps import run_commit
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview

TALSECRET = "kubernetes/bootstrap/talos/talsecret.sops.yaml"


def missing(ctx: RunContext) -> bool:
    return not (ctx.root / TALSECRET).exists()


def new_bundle_document(ctx: RunContext) -> dict[str, Any]:
    """This run's new bundle (plain data, in memory)."""
    doc = ctx.memory.get("new-talsecret")
    if doc is None:
        from dapper.backends.talosgen.gensecret import new_secret_bundle

        doc = ctx.memory["new-talsecret"] = new_secret_bundle()
    return doc


def pending_bundle(ctx: RunContext) -> Any:
    """The SecretBundle to generate configs from while the file is not written yet."""
    if not missing(ctx):
        return None
    from dapper.backends.talosgen.secrets import parse_bundle

    return parse_bundle(new_bundle_document(ctx), ctx.root / TALSECRET)


def tree_changes(ctx: RunContext) -> bool:
    """This run writes (or wrote) talsecret.sops.yaml and so commits it."""
    return missing(ctx) or bool(ctx.out("talsecret", "paths") or run_commit(ctx))


class TalsecretStep(Step):
    id = "talsecret"
    title = "Generate talsecret.sops.yaml (the cluster's Talos secrets), encrypted"

    def _rule(self, ctx: RunContext) -> Any:
        from dapper.backends.sops.errors import SopsError
        from dapper.backends.sops.rules import find_creation_rule

        try:
            return find_creation_rule(ctx.root, TALSECRET)
        except SopsError as exc:
            raise StepFailed(f".sops.yaml: {exc}") from None

    def check(self, ctx: RunContext) -> Check:
        if missing(ctx):
            return Check(False)
        return Check(True, f"{TALSECRET} exists")

    def preview(self, ctx: RunContext) -> StepPreview:
        rule = self._rule(ctx)
        return StepPreview(
            self.id,
            self.title,
            calls=[
                "generate a Talos secret bundle in memory (CAs for etcd, Kubernetes, the "
                "aggregator and the Talos API; service-account key; tokens; cluster id)",
                f"encrypt it for {', '.join(a[:16] + '…' for a in rule.age)} "
                f"({rule.describe()}) and write {TALSECRET}",
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from dapper.backends.sops.file import encrypt_documents, write_encrypted

        ctx.save(paths=[TALSECRET])  # before the write: resume accepts this new file
        text = encrypt_documents([new_bundle_document(ctx)], self._rule(ctx))
        write_encrypted(ctx.root / TALSECRET, text)
        return {"paths": [TALSECRET]}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        from dapper.actions.preflight import identities
        from dapper.backends.talosgen.secrets import load_secret_bundle

        load_secret_bundle(ctx.root, identities(ctx))  # decrypts and is complete
        return {}
