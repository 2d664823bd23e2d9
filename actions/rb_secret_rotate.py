"""secret-rotate: new values for keys of a SOPS-encrypted Secret, through Git and Flux.

Steps: bring the branch up to date; re-encrypt the file with the new values (fresh data
key, recipients of the matching `.sops.yaml` rule); commit; push; reconcile the owning
Kustomization with its source and wait for the new revision; check that the live Secret
now holds the committed values (by hash); optionally restart the workloads that do not
pick the change up by themselves. New values are generated, typed (asked twice) or read
from a command's stdout, and live only in memory.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import string
import subprocess
from pathlib import Path
from typing import Any

from dapper.actions.choices import SecretKeysOf, SopsSecretFiles
from dapper.actions.common_steps import (
    CommitStep,
    PushStep,
    ReconcileStep,
    SyncStep,
    run_commit,
)
from dapper.actions.diffs import sops_masked
from dapper.actions.engine import Check, Runbook, RunContext, Step, StepFailed, StepPreview
from dapper.actions.events import PromptRequest
from dapper.actions.params import Param
from dapper.actions.preflight import identities, own_paths
from dapper.actions.secret_refs import Consumer, SecretFile, consumers, load_tree, secret_files
from dapper.backends.sops.errors import NotSopsFileError
from dapper.backends.sops.file import decrypt_file, is_sops_file, write_encrypted
from dapper.backends.sops.rules import find_creation_rule
from dapper.backends.sops.secret import encrypted_keys, rewrite_values

ALPHABETS = {
    "urlsafe": string.ascii_letters + string.digits + "-_",
    "alnum": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
}
COMMAND_TIMEOUT = 30.0


def generate(length: int, alphabet: str) -> str:
    chars = ALPHABETS[alphabet]
    return "".join(secrets.choice(chars) for _ in range(length))


def _per_key(spec: str, keys: tuple[str, ...], what: str, default: str) -> dict[str, str]:
    """`"48"` or `"password:48,token:64"` -> {key: value} for every key."""
    out = dict.fromkeys(keys, default)
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        key, sep, value = part.rpartition(":")
        if not sep:
            out = dict.fromkeys(keys, value)
        elif key in out:
            out[key] = value
        else:
            raise StepFailed(f"{what}: {key!r} is not one of the keys to rotate")
    return out


def _value_hash(value: Any, field: str) -> str:
    import base64

    raw = base64.b64decode(str(value)) if field == "data" else str(value).encode()
    return hashlib.sha256(raw).hexdigest()


def committed_hashes(ctx: RunContext, path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each key's value as Kubernetes stores it, from the file as it is now."""
    doc = decrypt_file(path, identities(ctx))
    out: dict[str, str] = {}
    for d in doc.documents:
        if d.get("kind") != "Secret":
            continue
        for field in ("data", "stringData"):
            section = d.get(field) or {}
            for k in keys:
                if k in section:
                    out[k] = _value_hash(section[k], field)
    return out


class _Target:
    """The file and its Secret, resolved once per run from the parameters and the tree."""

    def __init__(self, ctx: RunContext) -> None:
        rel = str(ctx.params["file"] or "").strip()
        if not rel:
            raise StepFailed(
                "parameter file= is required (see `dapper-tui runbook run secret-rotate --help`)"
            )
        self.rel = Path(rel).as_posix()
        self.path = ctx.root / self.rel
        if not self.path.is_file():
            raise StepFailed(f"{self.rel}: no such file in {ctx.root}")
        text = self.path.read_text()
        if not is_sops_file(text):
            raise NotSopsFileError(f"{self.rel}: not a SOPS-encrypted file")
        self.keys: tuple[str, ...] = tuple(ctx.params["keys"] or ())
        if not self.keys:
            raise StepFailed("parameter keys= is required (comma-separated key names)")
        present = encrypted_keys(self.path)
        missing = [k for k in self.keys if k not in present]
        if missing:
            raise StepFailed(
                f"{self.rel}: no key(s) {', '.join(missing)}; it has {', '.join(present)}"
            )
        tree = load_tree(ctx.root, ctx.repo.head()[1])
        found = [f for f in secret_files(tree, ctx.root) if f.path == self.rel]
        self.file: SecretFile | None = found[0] if found else None
        if self.file is None or self.file.owner is None:
            raise StepFailed(f"{self.rel}: no Flux Kustomization applies this file")
        if self.file.secret is None:
            raise StepFailed(f"{self.rel}: cannot tell which Secret it becomes in the cluster")
        self.owner: tuple[str, str] = self.file.owner
        self.secret: tuple[str, str] = self.file.secret
        self.consumers: list[Consumer] = consumers(tree, *self.secret)


def target(ctx: RunContext) -> _Target:
    if "target" not in ctx.memory:
        ctx.memory["target"] = _Target(ctx)
    return ctx.memory["target"]


def _head_text(ctx: RunContext, rel: str) -> str | None:
    import pygit2

    repo = ctx.repo.repo
    if repo.head_is_unborn:
        return None
    try:
        blob = repo[repo.head.peel().tree[rel].id]
        return blob.data.decode() if isinstance(blob, pygit2.Blob) else None
    except KeyError:
        return None


def _mac(text: str | None) -> str:
    """The encrypted MAC line of a SOPS file: changes with every re-encryption."""
    if not text:
        return ""
    for line in text.splitlines():
        if line.strip().startswith("mac:"):
            return line.split(":", 1)[1].strip()
    return ""


class EditStep(Step):
    id = "edit"
    title = "Re-encrypt the Secret file with new values"

    def check(self, ctx: RunContext) -> Check:
        t = target(ctx)
        if run_commit(ctx):
            return Check(True, "this run's commit exists")
        # preconditions: a matching rule, a key that decrypts, an intact MAC
        find_creation_rule(ctx.root, t.path)
        decrypt_file(t.path, identities(ctx))
        current = t.path.read_text()
        if t.rel in own_paths(ctx) and _mac(current) != _mac(_head_text(ctx, t.rel)):
            return Check(True, "the file already holds this run's new values")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        t = target(ctx)
        placeholder = {k: secrets.token_urlsafe(24) for k in t.keys}
        new = rewrite_values(t.path, placeholder, identities(ctx), ctx.root)
        diff = sops_masked(t.rel, t.path.read_text(), new, identities(ctx))
        ns, name = t.secret
        notes = [f"Secret {ns}/{name} is applied by Kustomization {t.owner[0]}/{t.owner[1]}"]
        notes += [f"consumer: {c.describe()}" for c in t.consumers] or ["no workload consumes it"]
        source = ctx.params["source"]
        how = {
            "generate": f"generated ({ctx.params['length']} chars, {ctx.params['alphabet']})",
            "typed": "typed by you (asked twice, not shown)",
            "command": "read from the command's stdout",
        }[source]
        notes.append(f"new values for {', '.join(t.keys)}: {how}")
        return StepPreview(
            self.id,
            self.title,
            diffs=[diff],
            notes=notes,
            calls=[f"write {t.rel} (ciphertext only)"],
        )

    def _values(self, ctx: RunContext, t: _Target) -> dict[str, str]:
        source = ctx.params["source"]
        if source == "generate":
            lengths = _per_key(ctx.params["length"], t.keys, "length", "32")
            alphabets = _per_key(ctx.params["alphabet"], t.keys, "alphabet", "urlsafe")
            out = {}
            for k in t.keys:
                if alphabets[k] not in ALPHABETS:
                    raise StepFailed(f"alphabet for {k}: one of {', '.join(ALPHABETS)}")
                try:
                    n = int(lengths[k])
                except ValueError:
                    raise StepFailed(f"length for {k}: not a number") from None
                if not 8 <= n <= 4096:
                    raise StepFailed(f"length for {k}: between 8 and 4096")
                out[k] = generate(n, alphabets[k])
            return out
        if source == "command":
            return {k: self._from_command(ctx, k) for k in t.keys}
        if ctx.prompt is None:
            raise StepFailed("typed values need an interactive terminal (or source=command)")
        out = {}
        for k in t.keys:
            try:
                first = ctx.prompt(PromptRequest(f"new value for {k}", secret=True))
                second = ctx.prompt(PromptRequest(f"new value for {k} (again)", secret=True))
            except EOFError:
                raise StepFailed("typed values need an interactive terminal") from None
            if first != second:
                raise StepFailed(f"the two values typed for {k} differ; nothing changed")
            if not first:
                raise StepFailed(f"empty value for {k}; nothing changed")
            out[k] = first
        return out

    def _from_command(self, ctx: RunContext, key: str) -> str:
        cmd = str(ctx.params["from-command"] or "")
        if not cmd:
            raise StepFailed("source=command needs from-command=...")
        env = {**os.environ, "DAPPER_SECRET_KEY": key}
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", cmd],
                capture_output=True,
                env=env,
                timeout=COMMAND_TIMEOUT,
                check=False,
                cwd=ctx.root,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"from-command timed out after {COMMAND_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            raise StepFailed(f"from-command exited with status {proc.returncode} for {key}")
        try:
            value = proc.stdout.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise StepFailed(
                f"from-command printed bytes that are not UTF-8 for {key} (at byte "
                f"{exc.start}); a Secret value here must be text: nothing changed"
            ) from None
        if not value:
            raise StepFailed(f"from-command printed nothing for {key}")
        return value

    def run(self, ctx: RunContext) -> dict[str, Any]:
        t = target(ctx)
        values = self._values(ctx, t)
        text = rewrite_values(t.path, values, identities(ctx), ctx.root)
        del values
        ctx.save(paths=[t.rel])  # journaled before the write: resume knows the file is ours
        write_encrypted(t.path, text)
        return {"paths": [t.rel], "keys": list(t.keys)}


class SecretLiveStep(Step):
    id = "verify-secret"
    title = "Check the live Secret holds the new values (by hash)"

    def _compare(self, ctx: RunContext) -> tuple[bool, str]:
        t = target(ctx)
        want = committed_hashes(ctx, t.path, t.keys)
        info = ctx.cluster.secret(*t.secret)
        if info is None:
            return False, "the Secret is not in the cluster"
        live = dict(info.hashes)
        same = [k for k in t.keys if live.get(k) == want.get(k)]
        return len(same) == len(t.keys), f"{len(same)}/{len(t.keys)} keys hold the new values"

    def preview(self, ctx: RunContext) -> StepPreview:
        ns, name = target(ctx).secret
        return StepPreview(self.id, self.title, calls=[f"read Secret {ns}/{name} (hashes only)"])

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        status = ctx.wait(
            "the live Secret",
            lambda: self._compare(ctx),
            timeout=float(ctx.params["reconcile-timeout"]),
        )
        return {"secret": "/".join(target(ctx).secret), "status": status}


class RestartStep(Step):
    id = "restart"
    title = "Restart workloads that do not reload the Secret themselves"

    def _targets(self, ctx: RunContext) -> list[tuple[str, str, str]]:
        return [c.restart_target for c in target(ctx).consumers if not c.reloads]

    def check(self, ctx: RunContext) -> Check:
        targets = self._targets(ctx)
        if not targets:
            return Check(True, "no workload needs a restart")
        if not ctx.params["restart"]:
            return Check(True, "restart=no: " + ", ".join(f"{k} {n}/{w}" for k, n, w in targets))
        done = ctx.out(self.id, "restarted", {}) or {}
        for kind, ns, name in targets:
            at = done.get(f"{kind}/{ns}/{name}")
            live = ctx.cluster.restarted_at(kind, ns, name)
            if live is not None and (not at or live != at):
                return Check(False)
        return Check(True, "all restarted")

    def preview(self, ctx: RunContext) -> StepPreview:
        targets = self._targets(ctx)
        if not ctx.params["restart"]:
            return StepPreview(
                self.id,
                self.title,
                notes=[
                    f"{k} {n}/{w} will keep the old values until restarted (restart=yes does it)"
                    for k, n, w in targets
                ],
            )
        return StepPreview(
            self.id,
            self.title,
            calls=[f"kubectl rollout restart {k.lower()}/{w} -n {n}" for k, n, w in targets],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        done: dict[str, str] = dict(ctx.out(self.id, "restarted", {}) or {})
        for kind, ns, name in self._targets(ctx):
            key = f"{kind}/{ns}/{name}"
            live = ctx.cluster.restarted_at(kind, ns, name)
            if live is None:
                ctx.progress(f"{key} is not in the cluster; nothing to restart")
                continue
            if key in done and live == done[key]:
                continue
            ctx.progress(f"rollout restart {key}")
            done[key] = ctx.cluster.rollout_restart(kind, ns, name)
            ctx.save(restarted=done)
        return {"restarted": done}


class SecretRotate(Runbook):
    name = "secret-rotate"
    title = "rotate a secret"
    summary = "Rotate values of a SOPS-encrypted Secret, through Git and Flux"
    params = (
        Param(
            "file",
            help="the SOPS file, relative to the repository root",
            hint="↑↓ chooses the SOPS file (its Kustomization and key names shown; no values)",
            required=True,
            provider=SopsSecretFiles(),
        ),
        Param(
            "keys",
            "list",
            help="key names to rotate, comma-separated",
            hint="space selects the keys to rotate",
            required=True,
            provider=SecretKeysOf("file"),
        ),
        Param(
            "source",
            help="where new values come from",
            default="generate",
            choices=("generate", "typed", "command"),
        ),
        Param(
            "length",
            help="generated length: N or key:N,...",
            default="32",
            shown_when=("source", "generate"),
        ),
        Param(
            "alphabet",
            help="generated alphabet: urlsafe|alnum|hex or key:name,...",
            default="urlsafe",
            shown_when=("source", "generate"),
        ),
        Param(
            "from-command",
            # The command line often carries the secret itself (`echo ...`, a token to a
            # password manager): it is masked, never journaled, never shown.
            help="command printing the value ($DAPPER_SECRET_KEY names it); kept secret",
            default="",
            secret=True,
            shown_when=("source", "command"),
        ),
        Param("restart", "bool", help="rollout restart consumers without Reloader", default=False),
        Param("reconcile-timeout", "int", help="seconds to wait for Flux", default=300),
    )

    def preflight(self, ctx: RunContext) -> None:
        if ctx.params.get("from-command") and ctx.params["source"] == "generate":
            ctx.params["source"] = "command"
        super().preflight(ctx)
        target(ctx)

    def commit_subject(self, ctx: RunContext) -> str:
        t = target(ctx)
        return f"rotate {', '.join(t.keys)} in {t.rel}"

    def steps(self, ctx: RunContext) -> list[Step]:
        return [
            SyncStep(),
            EditStep(),
            CommitStep(self.commit_subject),
            PushStep(),
            ReconcileStep(lambda c: [target(c).owner], "reconcile-timeout"),
            SecretLiveStep(),
            RestartStep(),
        ]
