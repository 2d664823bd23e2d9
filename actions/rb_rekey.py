"""rekey: move the tree to a new age key without a moment where Flux cannot decrypt.

Order matters and is the point of this runbook: a new key is appended to the operator's
key file (old keys kept); `.sops.yaml` names the new recipient; every SOPS file is
re-encrypted to its rule's recipients, and the in-tree `sops-age` Secret gets the new key
next to the old one; the cluster's live `sops-age` Secrets are patched to the same old+new
content BEFORE the push, so Flux can decrypt the new commit the moment it sees it; then
commit, push, reconcile, verify. Pushing first leaves Flux with files it has no key for
(DecryptionFailed) until someone patches the Secret by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import pyrage
from dapper.actions.common_steps import CommitStep, PushStep, ReconcileStep, SyncStep
from dapper.actions.diffs import sops_masked, unified
from dapper.actions.engine import Check, Runbook, RunContext, Step, StepFailed, StepPreview
from dapper.actions.params import Param
from dapper.actions.preflight import identities, key_file
from dapper.actions.secret_refs import load_tree
from dapper.actions.yamledit import edit_text, set_age_recipients
from dapper.backends.sops.errors import NotSopsFileError
from dapper.backends.sops.file import (
    decrypt_file,
    is_sops_file,
    load_sops_config,
    reencrypt,
    write_encrypted,
)
from dapper.backends.sops.keys import parse_identities, read_identity_file
from dapper.backends.sops.rules import CONFIG_NAME
from dapper.backends.sops.secret import rewrite_values

SOPS_AGE_SECRET = "sops-age"
SOPS_AGE_KEY = "age.agekey"
MARK = "dapper-tui runbook rekey, run "


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sops_files(root: Path) -> list[str]:
    """Every `*.sops.yaml`/`.yml` in the work tree (repo-relative, sorted), .git excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            if name.endswith((".sops.yaml", ".sops.yml")) and name != CONFIG_NAME:
                out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


def _sops_age_file(doc: Any) -> bool:
    for d in doc.documents:
        if d.get("kind") == "Secret" and (d.get("metadata") or {}).get("name") == SOPS_AGE_SECRET:
            sections = [d.get("stringData") or {}, d.get("data") or {}]
            if any(SOPS_AGE_KEY in s for s in sections):
                return True
    return False


def _key_text(doc: Any) -> str:
    import base64

    for d in doc.documents:
        if (d.get("metadata") or {}).get("name") != SOPS_AGE_SECRET:
            continue
        if SOPS_AGE_KEY in (d.get("stringData") or {}):
            return str(d["stringData"][SOPS_AGE_KEY])
        if SOPS_AGE_KEY in (d.get("data") or {}):
            return base64.b64decode(str(d["data"][SOPS_AGE_KEY])).decode()
    return ""


def _with_key(text: str, secret_key: str) -> str:
    """Old key text plus the new key line (once), one key per line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if secret_key not in (ln.strip() for ln in lines):
        lines.append(secret_key)
    return "\n".join(lines) + "\n"


class NewKeyStep(Step):
    id = "new-key"
    title = "Create a new age key (appended to your key file; old keys kept)"

    def _existing(self, ctx: RunContext) -> str:
        """The public key this run appended earlier ("" if none), found by its comment."""
        path = Path(key_file(ctx))
        if not path.is_file():
            return ""
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("#") and MARK + ctx.run_id in line:
                for follow in lines[i + 1 : i + 3]:
                    if follow.startswith("# public key:"):
                        return follow.split(":", 1)[1].strip()
        return ""

    def check(self, ctx: RunContext) -> Check:
        key_file(ctx)
        found = self._existing(ctx)
        if found:
            ctx.outputs.setdefault(self.id, {})["recipient"] = found
            return Check(True, f"key {found} exists")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(self.id, self.title, calls=[f"append a new age key to {key_file(ctx)}"])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        path = Path(key_file(ctx))
        ident = pyrage.x25519.Identity.generate()
        recipient = str(ident.to_public())
        block = f"# created: {_now()} by {MARK}{ctx.run_id}\n# public key: {recipient}\n{ident}\n"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = path.read_text() if path.is_file() else ""
        sep = "" if not existing or existing.endswith("\n") else "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (sep + block).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(path, 0o600)
        ctx.memory.pop("identities", None)  # reload: old and new
        return {"recipient": recipient}


def new_recipient(ctx: RunContext) -> str:
    r = ctx.out("new-key", "recipient", "")
    if not r:
        raise StepFailed("the new key is not known yet")
    return r


def new_secret_key(ctx: RunContext) -> str:
    """The new private key line, read back from the key file (never journaled)."""
    want = new_recipient(ctx)
    for ident in read_identity_file(key_file(ctx)):
        if str(ident.to_public()) == want:
            return str(ident)
    raise StepFailed(f"the key file no longer holds the key for {want}")


def old_recipients(ctx: RunContext) -> list[str]:
    """Recipients in .sops.yaml whose private keys the operator holds (not the new one)."""
    mine = {str(i.to_public()) for i in identities(ctx)}
    cfg = load_sops_config(ctx.root / CONFIG_NAME)
    new = ctx.out("new-key", "recipient", "")
    return sorted({r for rule in cfg.rules for r in rule.age if r in mine and r != new})


class SopsConfigStep(Step):
    id = "sops-config"
    title = "Point .sops.yaml at the new recipient"

    def _new_text(self, ctx: RunContext, recipient: str) -> tuple[str, str]:
        path = ctx.root / CONFIG_NAME
        old = path.read_text()
        olds = old_recipients(ctx)
        keep = bool(ctx.params["keep-old-recipient"])
        new = edit_text(old, lambda docs: set_age_recipients(docs, olds, recipient, keep))
        return old, new

    def check(self, ctx: RunContext) -> Check:
        recipient = ctx.out("new-key", "recipient", "")
        if not recipient:
            return Check(False)
        cfg = load_sops_config(ctx.root / CONFIG_NAME)
        if all(recipient in rule.age for rule in cfg.rules) and (
            ctx.params["keep-old-recipient"] or not old_recipients(ctx)
        ):
            return Check(True, ".sops.yaml names the new recipient")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        placeholder = "age1<new key, created in the previous step>"
        old, new = self._new_text(ctx, ctx.out("new-key", "recipient", "") or placeholder)
        return StepPreview(self.id, self.title, diffs=[unified(CONFIG_NAME, old, new)])

    def run(self, ctx: RunContext) -> dict[str, Any]:
        old, new = self._new_text(ctx, new_recipient(ctx))
        if old == new:
            raise StepFailed(f"{CONFIG_NAME}: no rule names a recipient of your key")
        ctx.save(paths=[CONFIG_NAME])
        path = ctx.root / CONFIG_NAME
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        os.replace(tmp, path)
        return {"paths": [CONFIG_NAME]}


class ReencryptStep(Step):
    id = "reencrypt"
    title = "Re-encrypt every SOPS file to the new recipients"

    def _plan(self, ctx: RunContext) -> list[tuple[str, bool]]:
        """(file, holds the sops-age key) for every SOPS file; preconditions raise."""
        cfg = load_sops_config(ctx.root / CONFIG_NAME)
        out = []
        for rel in sops_files(ctx.root):
            path = ctx.root / rel
            if not is_sops_file(path.read_text()):
                raise NotSopsFileError(f"{rel}: named .sops.yaml but not SOPS-encrypted")
            cfg.rule_for(path)  # NoMatchingRuleError: a file outside the rules
            doc = decrypt_file(path, identities(ctx))  # NoKey / WrongKey / MacMismatch
            out.append((rel, _sops_age_file(doc)))
        return out

    def _done(self, ctx: RunContext, rel: str, holds_key: bool) -> bool:
        cfg = load_sops_config(ctx.root / CONFIG_NAME)
        path = ctx.root / rel
        doc = decrypt_file(path, identities(ctx))
        if set(doc.recipients) != set(cfg.rule_for(path).age):
            return False
        recipient = ctx.out("new-key", "recipient", "")
        if holds_key and recipient:
            keys = parse_identities(_key_text(doc), rel)
            return any(str(k.to_public()) == recipient for k in keys)
        return True

    def check(self, ctx: RunContext) -> Check:
        plan = self._plan(ctx)
        if not ctx.out("new-key", "recipient", ""):
            return Check(False)
        if all(self._done(ctx, rel, holds) for rel, holds in plan):
            return Check(True, f"all {len(plan)} files use the new recipients")
        return Check(False)

    def preview(self, ctx: RunContext) -> StepPreview:
        plan = self._plan(ctx)
        calls = [
            f"re-encrypt {rel}" + (" (and add the new key to sops-age)" if holds else "")
            for rel, holds in plan
        ]
        diffs = []
        for rel, holds in plan:
            if holds:
                path = ctx.root / rel
                placeholder = "AGE-SECRET-KEY-1NEWKEYPLACEHOLDER"
                doc = decrypt_file(path, identities(ctx))
                text = rewrite_values(
                    path,
                    {SOPS_AGE_KEY: _with_key(_key_text(doc), placeholder)},
                    identities(ctx),
                    ctx.root,
                )
                diffs.append(sops_masked(rel, path.read_text(), text, identities(ctx)))
        return StepPreview(self.id, self.title, calls=calls, diffs=diffs)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        plan = self._plan(ctx)
        secret_key = new_secret_key(ctx)
        cfg = load_sops_config(ctx.root / CONFIG_NAME)
        paths = [rel for rel, _ in plan]
        ctx.save(paths=paths)
        for rel, holds in plan:
            if self._done(ctx, rel, holds):
                continue
            path = ctx.root / rel
            ctx.progress(f"re-encrypting {rel}")
            if holds:
                doc = decrypt_file(path, identities(ctx))
                text = rewrite_values(
                    path,
                    {SOPS_AGE_KEY: _with_key(_key_text(doc), secret_key)},
                    identities(ctx),
                    ctx.root,
                )
            else:
                text = reencrypt(path, identities(ctx), cfg.rule_for(path))
            write_encrypted(path, text)
        return {"paths": paths, "files": len(paths)}


def cluster_key_text(ctx: RunContext) -> str:
    """What every live sops-age Secret must hold: the tree's key text with the new key."""
    secret_key = new_secret_key(ctx)
    for rel in sops_files(ctx.root):
        doc = decrypt_file(ctx.root / rel, identities(ctx))
        if _sops_age_file(doc):
            return _with_key(_key_text(doc), secret_key)
    old = [str(i) for i in identities(ctx) if str(i.to_public()) in old_recipients(ctx)]
    return _with_key("\n".join(old), secret_key)


class ClusterKeyStep(Step):
    id = "cluster-key"
    title = "Give the cluster's sops-age Secrets the new key (old kept) before pushing"

    def _targets(self, ctx: RunContext) -> list[tuple[str, str]]:
        found = [(s.namespace, s.name) for s in ctx.cluster.secrets_named(SOPS_AGE_SECRET)]
        if ("flux-system", SOPS_AGE_SECRET) not in found:
            raise StepFailed("the cluster has no flux-system/sops-age Secret to extend")
        return sorted(found)

    def _stale(self, ctx: RunContext) -> list[tuple[str, str]]:
        want = hashlib.sha256(cluster_key_text(ctx).encode()).hexdigest()
        stale = []
        for ns, name in self._targets(ctx):
            info = ctx.cluster.secret(ns, name)
            if info is None or dict(info.hashes).get(SOPS_AGE_KEY) != want:
                stale.append((ns, name))
        return stale

    def check(self, ctx: RunContext) -> Check:
        targets = self._targets(ctx)
        if not ctx.out("new-key", "recipient", "") or not ctx.out("reencrypt", "paths"):
            return Check(False)
        stale = self._stale(ctx)
        return Check(not stale, f"{len(targets)} Secret(s) hold the new key" if not stale else "")

    def preview(self, ctx: RunContext) -> StepPreview:
        return StepPreview(
            self.id,
            self.title,
            calls=[
                f"patch Secret {ns}/{name} key {SOPS_AGE_KEY} (old + new key; value not shown)"
                for ns, name in self._targets(ctx)
            ],
        )

    def run(self, ctx: RunContext) -> dict[str, Any]:
        patched = patch_cluster_keys(ctx, self._stale(ctx))
        return {"patched": patched}

    def verify(self, ctx: RunContext) -> dict[str, Any]:
        stale = self._stale(ctx)
        if stale:
            raise StepFailed(f"sops-age not updated in {', '.join('/'.join(s) for s in stale)}")
        return {}


def patch_cluster_keys(ctx: RunContext, targets: list[tuple[str, str]]) -> list[str]:
    text = cluster_key_text(ctx)
    done = []
    for ns, name in targets:
        ctx.progress(f"patching Secret {ns}/{name}")
        ctx.cluster.patch_secret(ns, name, {SOPS_AGE_KEY: text})
        done.append(f"{ns}/{name}")
    return done


def owning_kustomizations(ctx: RunContext) -> list[tuple[str, str]]:
    """Kustomizations applying any re-encrypted file, parents before children."""
    cached = ctx.memory.get("owners")
    if cached is not None:
        return cached
    tree = load_tree(ctx.root, ctx.repo.head()[1])
    files = set(sops_files(ctx.root))
    owners = {ks.key for f in files for ks in tree.owners_of(f)}
    try:
        order = [ks.key for ks in tree.dependency_order()]
    except Exception:
        order = [ks.key for ks in tree.kustomizations]
    root = [("flux-system", "flux-system")]
    out = root + [k for k in order if k in owners and k not in root]
    ctx.memory["owners"] = out
    return out


class RekeyReconcileStep(ReconcileStep):
    """Before asking Flux, re-patch sops-age if a reconcile at the old revision reverted it
    (Flux manages that Secret too, and re-applies the tree's old copy on drift)."""

    def __init__(self, *args: Any, repatch: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.repatch = repatch

    def run(self, ctx: RunContext) -> dict[str, Any]:
        if self.repatch:
            stale = ClusterKeyStep()._stale(ctx)
            if stale:
                ctx.progress(f"{len(stale)} sops-age Secret(s) were reverted; patching again")
                patch_cluster_keys(ctx, stale)
        return super().run(ctx)


class Rekey(Runbook):
    name = "rekey"
    title = "re-key the tree"
    summary = "Re-encrypt every SOPS file to a new age key, and give the cluster that key"
    params = (
        Param(
            "keep-old-recipient",
            "bool",
            default=False,
            help="also keep encrypting to the old key (default: new key only)",
        ),
        Param("reconcile-timeout", "int", default=300, help="seconds to wait for Flux"),
    )

    def __init__(self, *, cluster_key_first: bool = True) -> None:
        self.cluster_key_first = cluster_key_first

    def commit_subject(self, ctx: RunContext) -> str:
        r = ctx.out("new-key", "recipient", "") or "a new age key"
        return f"re-encrypt the tree to {r}"

    def steps(self, ctx: RunContext) -> list[Step]:
        reconcile = RekeyReconcileStep(
            owning_kustomizations, "reconcile-timeout", repatch=self.cluster_key_first
        )
        head = [SyncStep(), NewKeyStep(), SopsConfigStep(), ReencryptStep()]
        git = [CommitStep(self.commit_subject), PushStep()]
        if self.cluster_key_first:
            return [*head, ClusterKeyStep(), *git, reconcile]
        return [*head, *git, reconcile, ClusterKeyStep()]  # the wrong order, for the test
