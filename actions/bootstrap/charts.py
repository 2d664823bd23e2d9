"""The bootstrap releases, installed by helmfile as the tree's procedure does.

`helmfile apply` on kubernetes/bootstrap/apps/helmfile.yaml (its `needs` give the order:
CRDs, Cilium, CoreDNS, cert-manager, External Secrets, Flux Operator, the FluxInstance),
then `helmfile destroy` of the CRD-only release, whose CRDs stay (resource-policy keep).
The command runs as a process with KUBECONFIG set; what it prints goes to the run's
progress, cleaned of terminal escapes.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from dapper.actions.bootstrap.kube import kube
from dapper.actions.bootstrap.plan import (
    CRDS_RELEASE,
    HELMFILE,
    helmfile_command,
    kubeconfig_path,
    timeout,
)
from dapper.actions.engine import Check, RunContext, Step, StepFailed, StepPreview
from dapper.backends.errors import BackendError
from dapper.backends.safe_text import clean

APPLY_ARGS = ("apply", "--skip-diff-on-install", "--suppress-diff")
DESTROY_ARGS = ("destroy", "--selector", f"name={CRDS_RELEASE}")


def releases(ctx: RunContext) -> list[tuple[str, str]]:
    """(namespace, name) of every release in helmfile.yaml, in file order."""
    from dapper.backends.sops.file import load_yaml_documents

    docs = load_yaml_documents((ctx.root / HELMFILE).read_text(), HELMFILE)
    out = []
    for doc in docs:
        for r in (doc or {}).get("releases") or []:
            out.append((str(r.get("namespace") or "default"), str(r.get("name"))))
    return out


def installed(ctx: RunContext) -> set[str]:
    """Release names with a Helm release Secret (sh.helm.release.v1.<name>.vN)."""
    names: set[str] = set()
    if not kubeconfig_path(ctx).exists():
        return names
    for ns in {ns for ns, _ in releases(ctx)}:
        try:
            secrets = kube(ctx).core_names("Secret", ns)
        except BackendError:
            continue
        for s in secrets:
            if s.startswith("sh.helm.release.v1."):
                names.add(s[len("sh.helm.release.v1.") :].rsplit(".v", 1)[0])
    return names


def command_line(ctx: RunContext, args: tuple[str, ...]) -> list[str]:
    return [helmfile_command(ctx), "--file", HELMFILE, *args]


def run_helmfile(ctx: RunContext, args: tuple[str, ...]) -> None:
    """Run helmfile from the repo root with KUBECONFIG; its output is the run's progress."""
    argv = command_line(ctx, args)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path(ctx))}
    ctx.progress("$ helmfile " + " ".join(argv[1:]))
    try:
        proc = subprocess.Popen(
            argv,
            cwd=ctx.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise StepFailed(f"helmfile could not start: {exc.strerror or exc}") from None
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        last = clean(line.rstrip())
        if last:
            ctx.progress(last)
    try:
        code = proc.wait(timeout=timeout(ctx))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise StepFailed(f"helmfile {args[0]} took longer than {timeout(ctx):g}s") from None
    if code != 0:
        raise StepFailed(f"helmfile {args[0]} failed (exit {code}): {last or 'no output'}")


class ReleasesStep(Step):
    id = "releases"
    title = "Install the bootstrap releases with helmfile; remove the CRD-only release"

    def _state(self, ctx: RunContext) -> tuple[list[str], bool]:
        """(releases still to install, whether the CRD-only release still exists)."""
        have = installed(ctx)
        wanted = [n for _, n in releases(ctx) if n != CRDS_RELEASE]
        return [n for n in wanted if n not in have], CRDS_RELEASE in have

    def check(self, ctx: RunContext) -> Check:
        missing, crds = self._state(ctx)
        if missing or crds:
            return Check(False)
        return Check(True, f"{len(releases(ctx)) - 1} releases installed, CRD release gone")

    def preview(self, ctx: RunContext) -> StepPreview:
        order = ", ".join(n for _, n in releases(ctx))
        return StepPreview(
            self.id,
            self.title,
            calls=[
                "KUBECONFIG="
                + str(kubeconfig_path(ctx))
                + " "
                + " ".join(command_line(ctx, APPLY_ARGS)),
                " ".join(command_line(ctx, DESTROY_ARGS)) + " (its CRDs are kept)",
            ],
            notes=[f"order (needs): {order}"],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        missing, _ = self._state(ctx)
        if missing:
            run_helmfile(ctx, APPLY_ARGS)
        _, crds = self._state(ctx)
        if crds:
            run_helmfile(ctx, DESTROY_ARGS)
        return {}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        missing, crds = self._state(ctx)
        if missing:
            raise StepFailed(f"helmfile left releases uninstalled: {', '.join(missing)}")
        if crds:
            raise StepFailed(f"the {CRDS_RELEASE} release is still installed")
        return {"installed": [n for _, n in releases(ctx) if n != CRDS_RELEASE]}
