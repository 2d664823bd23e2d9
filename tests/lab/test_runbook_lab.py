"""Runbooks end to end on the lab: real Git remote, real Kubernetes API, the Flux twin.

The repository is always the lab's scratch clone. Side effects are counted where the
lab sees them: commits with the run's trailer on the bare remote, and the Kubernetes
writes (`world.writes`) of reconcile requests, Secret patches and rollout restarts.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from dapper.actions import registry
from dapper.actions.engine import Engine, RunResult
from dapper.actions.events import Event, Kind, StepState
from dapper.actions.journal import Journal, list_runs
from dapper.actions.rb_rekey import Rekey, sops_files
from dapper.actions.rb_secret_rotate import ALPHABETS
from dapper.backends.clients.gitrepo import GitRepo, parse_trailers
from dapper.backends.clients.kube import KubeBackend
from dapper.backends.errors import ReadOnlyError
from dapper.backends.sops.file import decrypt_file, load_sops_config
from dapper.cli.main import main
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings

CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"
CF_SECRET = ("network", "external-dns-cloudflare-secret")
CF_KS = ("network", "external-dns-cloudflare")
TUNNEL_FILE = "kubernetes/apps/network/cloudflared/app/secret.sops.yaml"
TUNNEL_SECRET = ("network", "cloudflared-secret")
TUNNEL_HR = "kubernetes/apps/network/cloudflared/app/helmrelease.yaml"
TIMINGS = Timings(reconcile_interval=600.0)  # no periodic passes: only pushes and requests


@pytest.fixture
def lab(tmp_path: Path) -> Iterator:
    running = start_lab(directory=tmp_path / "lab", timings=TIMINGS)
    try:
        running.flux.reconcile_now(timeout=60)
        yield running
    finally:
        client = getattr(running, "_test_kube", None)
        if client is not None:
            client.close()
        running.stop()


def kube(lab) -> KubeBackend:
    """One client per lab, closed before the lab stops (an open keep-alive would stall it)."""
    client = getattr(lab, "_test_kube", None)
    if client is None:
        client = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
        lab._test_kube = client
    return client


def remote_head(lab) -> pygit2.Commit:
    repo = lab.remote.repository()
    return repo[repo.references["refs/heads/main"].target]


def run_commits(lab, run_id: str) -> list[pygit2.Commit]:
    repo = lab.remote.repository()
    tip = repo.references["refs/heads/main"].target
    return [c for c in repo.walk(tip) if f"Runbook-Run: {run_id}" in c.message]


def writes(lab) -> Counter:
    return Counter(w.op for w in lab.world.writes)


def committed_hash(lab, rel: str, key: str) -> str:
    doc = decrypt_file(Path(lab.config.repo_path) / rel, [lab.files.age_key.read_text()])
    for d in doc.documents:
        section = d.get("stringData") or {}
        if key in section:
            return hashlib.sha256(str(section[key]).encode()).hexdigest()
        if key in (d.get("data") or {}):
            return hashlib.sha256(base64.b64decode(d["data"][key])).hexdigest()
    raise AssertionError(f"{key} not in {rel}")


def live_hash(lab, ns_name: tuple[str, str], key: str) -> str:
    return dict(kube(lab).secret(*ns_name).hashes)[key]


def test_secret_rotate_from_the_cli(lab, capsys: pytest.CaptureFixture[str]) -> None:
    before = live_hash(lab, CF_SECRET, "api-token")
    args = ["--config", str(lab.files.config), "runbook", "run", "secret-rotate"]
    command = 'printf "%s-1b7e9c2f4d\\n" "rotated-$DAPPER_SECRET_KEY"'
    value = "rotated-api-token-1b7e9c2f4d"
    params = [f"file={CF_FILE}", "keys=api-token", "reconcile-timeout=30"]
    params.append(f"from-command={command}")
    rc = main(args + [x for p in params for x in ("--param", p)] + ["--yes"])
    out = capsys.readouterr()
    assert rc == 0, out.err

    head = remote_head(lab)
    assert head.message.startswith(f"runbook(secret-rotate): rotate api-token in {CF_FILE}")
    trailers = parse_trailers(head.message)
    run_id = trailers["Runbook-Run"]
    sig = GitRepo.open(lab.config.repo_path).signature()
    assert trailers["Operator"] == f"{sig.name} <{sig.email}>"
    assert len(run_commits(lab, run_id)) == 1
    assert [d.new_file.path for d in head.tree.diff_to_tree(head.parents[0].tree).deltas] == [
        CF_FILE
    ]

    after = live_hash(lab, CF_SECRET, "api-token")
    assert after != before and after == committed_hash(lab, CF_FILE, "api-token")
    assert after == hashlib.sha256(value.encode()).hexdigest()
    ks = kube(lab).kustomization(*CF_KS)
    assert ks.ready == "True" and ks.applied_revision == f"main@sha1:{head.id}"
    assert writes(lab)["patch kustomizations"] <= 1  # none if Flux saw the push first

    record = Journal.open(run_id).read()
    assert record.ok and record.runbook == "secret-rotate" and record.operator
    assert record.outputs["commit"]["sha"] == str(head.id)
    assert "<secret: new value>" in out.out  # the preview, printed even with --yes
    assert value not in out.out + out.err
    assert value not in record.path.read_text()
    # the command line may carry a secret itself: masked in the preview, not journaled
    assert "rotated-$DAPPER_SECRET_KEY" not in out.out + out.err
    assert "rotated-$DAPPER_SECRET_KEY" not in record.path.read_text()

    assert main(["runbook", "list"]) == 0
    assert f"{run_id}  secret-rotate" in capsys.readouterr().out


def _rekey(lab, runbook: Rekey) -> RunResult:
    return Engine(lab.config).run(runbook, {"reconcile-timeout": "20"}, yes=True)


def test_rekey_patches_the_cluster_key_before_the_push(lab) -> None:
    root = Path(lab.config.repo_path)
    old_recipient = load_sops_config(root / ".sops.yaml").rules[0].age[0]
    with pytest.raises(Crash):  # killed right after patching the cluster, before the commit
        Engine(lab.config, emit=_crash_on("cluster-key")).run(
            Rekey(), {"reconcile-timeout": "20"}, yes=True
        )
    run_id = list_runs()[0].run_id
    result = Engine(lab.config).resume(run_id, Rekey(), yes=True)
    assert result.ok, result.reason
    new_recipient = result.outputs["new-key"]["recipient"]

    key_file = lab.files.age_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    keys = [ln for ln in key_file.read_text().splitlines() if ln.startswith("AGE-SECRET-KEY-")]
    assert len(keys) == 2  # old kept, new appended
    sops_yaml = (root / ".sops.yaml").read_text()
    assert "# Kubernetes Secrets: only data/stringData" in sops_yaml  # comments survive
    assert old_recipient not in sops_yaml and sops_yaml.count(new_recipient) == 2
    for rel in sops_files(root):
        doc = decrypt_file(root / rel, keys[-1:])  # the new key alone decrypts every file
        assert doc.recipients == (new_recipient,)

    head = remote_head(lab)
    assert parse_trailers(head.message)["Runbook-Run"] == result.run_id
    kb = kube(lab)
    for key in result.outputs["reconcile"]["revisions"]:
        ns, name = key.split("/")
        ks = kb.kustomization(ns, name)
        assert ks.ready == "True" and ks.applied_revision == f"main@sha1:{head.id}", key
    want = hashlib.sha256(("\n".join(keys) + "\n").encode()).hexdigest()
    live = {(s.namespace, s.name): dict(s.hashes) for s in kb.secrets() if s.name == "sops-age"}
    assert live and all(h["age.agekey"] == want for h in live.values())
    assert writes(lab)["patch secrets"] == len(live)  # each patched once


def test_rekey_that_pushes_first_fails_with_decryption_failed(lab) -> None:
    result = _rekey(lab, Rekey(cluster_key_first=False))
    assert not result.ok
    assert (
        "BuildFailed" in result.reason
        and "decryption failed" in result.reason
        and "\n" not in result.reason
    )
    assert "patch secrets" not in writes(lab)

    # the twin reads the live Secret on each reconcile: adding the key by hand recovers
    keys = [ln for ln in lab.files.age_key.read_text().splitlines() if ln.startswith("AGE-")]
    kb = kube(lab)
    kb.patch_secret("flux-system", "sops-age", {"age.agekey": "\n".join(keys) + "\n"})
    stamp = kb.reconcile("flux-system", "cluster-apps")
    revision = kb.wait_reconciled("flux-system", "cluster-apps", stamp, timeout=20)
    assert revision == f"main@sha1:{remote_head(lab).id}"


class Crash(BaseException):
    """Stands for a killed process: not an Exception, so nothing handles it on the way."""


def _crash_on(step: str, kind: Kind = Kind.STEP) -> object:
    def sink(event: Event) -> None:
        if event.step != step or event.kind != kind:
            return
        if kind == Kind.PROGRESS or event.state == StepState.DONE:
            raise Crash(step)

    return sink


def _no_reloader_on_cloudflared(lab) -> None:
    """Make cloudflared need a rollout restart (drop its Reloader annotation) and deploy it."""
    repo = GitRepo.open(lab.config.repo_path)
    path = repo.root / TUNNEL_HR
    path.write_text(path.read_text().replace("reloader.stakater.com/auto", "example.com/x"))
    repo.commit([TUNNEL_HR], "test: cloudflared without reloader")
    repo.push()
    lab.flux.reconcile_now(timeout=30)


def test_a_run_killed_after_any_step_resumes_without_repeating_side_effects(lab) -> None:
    _no_reloader_on_cloudflared(lab)
    rb = registry.get("secret-rotate")
    params = {
        "file": TUNNEL_FILE,
        "keys": "TUNNEL_ID",
        "restart": "yes",
        "reconcile-timeout": "30",
    }
    steps = ["sync", "edit", "commit", "push", "reconcile", "verify-secret", "restart"]
    crashes = [(s, Kind.STEP) for s in steps] + [("reconcile", Kind.PROGRESS)]
    for step, kind in crashes:
        before_writes = writes(lab)
        before_hash = live_hash(lab, TUNNEL_SECRET, "TUNNEL_ID")
        with pytest.raises(Crash):
            Engine(lab.config, emit=_crash_on(step, kind)).run(rb, params, yes=True)
        run_id = list_runs()[0].run_id
        assert list_runs()[0].status == "unfinished"
        result = Engine(lab.config).resume(run_id, registry.get("secret-rotate"), yes=True)
        assert result.ok, (step, result.reason)

        assert len(run_commits(lab, run_id)) == 1, step
        delta = writes(lab) - before_writes
        # at most once: Flux may already be at the commit (it watches the remote) when the
        # resumed run checks, and then nothing needs requesting
        assert delta["patch kustomizations"] <= 1, (step, delta)
        assert delta["patch gitrepositories"] == delta["patch kustomizations"], (step, delta)
        assert delta["patch deployments"] == 1, (step, delta)
        after = live_hash(lab, TUNNEL_SECRET, "TUNNEL_ID")
        assert after != before_hash and after == committed_hash(lab, TUNNEL_FILE, "TUNNEL_ID")
        assert Engine(lab.config).resume(run_id, rb, yes=True).reason == "already finished"
    doc = decrypt_file(Path(lab.config.repo_path) / TUNNEL_FILE, [lab.files.age_key.read_text()])
    generated = str(doc.documents[0]["stringData"]["TUNNEL_ID"])
    assert len(generated) == 32 and set(generated) <= set(ALPHABETS["urlsafe"])


def _reset_to_remote(lab) -> None:
    """Put the scratch clone back on the remote's main (the test's own lab repository)."""
    repo = GitRepo.open(lab.config.repo_path)
    repo.fetch()
    tip = repo.repo.references["refs/remotes/origin/main"].target
    repo.repo.reset(tip, pygit2.enums.ResetMode.HARD)


def _state(lab) -> tuple:
    repo = GitRepo.open(lab.config.repo_path)
    files = tuple(
        (p, p.read_bytes())
        for p in sorted(Path(lab.config.repo_path, "kubernetes").rglob("*"))
        if p.is_file()
    )
    return (repo.head()[1], str(remote_head(lab).id), len(lab.world.writes), files)


def _rotate(lab, config=None, emit=None, **extra: str) -> RunResult:
    params = {"file": CF_FILE, "keys": "api-token", "reconcile-timeout": "20", **extra}
    engine = Engine(config or lab.config, emit=emit)
    return engine.run(registry.get("secret-rotate"), params, yes=True)


def _refused(lab, result: RunResult, *fragments: str) -> None:
    assert not result.ok
    assert "\n" not in result.reason
    for fragment in fragments:
        assert fragment in result.reason, result.reason


def test_bad_inputs_stop_with_one_line_and_change_nothing(lab, tmp_path: Path) -> None:
    from dataclasses import replace

    from pyrage import x25519

    root = Path(lab.config.repo_path)
    repo = GitRepo.open(root)
    before = _state(lab)

    stray = root / "kubernetes/apps/stray.yaml"
    stray.write_text("a: 1\n")
    _refused(lab, _rotate(lab), "uncommitted changes", "kubernetes/apps/stray.yaml")
    stray.unlink()
    assert _state(lab) == before

    missing = replace(lab.config, sops_age_key_file=str(tmp_path / "nokey.txt"))
    _refused(lab, _rotate(lab, missing), "age key file", "nokey.txt")
    assert _state(lab) == before

    wrong = tmp_path / "wrong.txt"
    wrong.write_text(str(x25519.Identity.generate()) + "\n")
    _refused(
        lab,
        _rotate(lab, replace(lab.config, sops_age_key_file=str(wrong))),
        "none of 1 age identities decrypts",
    )
    assert _state(lab) == before

    path = root / CF_FILE
    tampered = path.read_text().replace('lastmodified: "', 'lastmodified: "1')
    if tampered == path.read_text():
        tampered = path.read_text().replace("lastmodified: '", "lastmodified: '1")
    path.write_text(tampered)
    repo.commit([CF_FILE], "test: tamper")
    mark = _state(lab)
    _refused(lab, _rotate(lab), "MAC")
    assert _state(lab) == mark
    _reset_to_remote(lab)

    sops_yaml = root / ".sops.yaml"
    sops_yaml.write_text(
        sops_yaml.read_text().replace("path_regex: kubernetes/", "path_regex: kubernetes/nothing/")
    )
    repo.commit([".sops.yaml"], "test: narrow the rule")
    mark = _state(lab)
    _refused(lab, _rotate(lab), "no creation rule")
    assert _state(lab) == mark
    _reset_to_remote(lab)
    assert _state(lab) == before
    assert list_runs() == []  # nothing was journaled: every refusal came before the confirm

    with pytest.raises(ReadOnlyError, match="read-only"):
        _rotate(lab, lab.readonly_config)
    dry = Engine(lab.readonly_config).run(
        registry.get("secret-rotate"), {"file": CF_FILE, "keys": "api-token"}, dry_run=True
    )
    assert dry.ok and dry.preview is not None and "<secret: new value>" in dry.preview.text()
    assert _state(lab) == before

    answers = iter(["typed-value-one", "typed-value-two"])
    typed = Engine(lab.config, prompt=lambda request: next(answers)).run(
        registry.get("secret-rotate"),
        {"file": CF_FILE, "keys": "api-token", "source": "typed"},
        yes=True,
    )
    _refused(lab, typed, "differ", "nothing changed")
    assert _state(lab) == before

    other = tmp_path / "other"
    clone = GitRepo(pygit2.clone_repository(str(lab.remote.bare_path), str(other)))
    clone.repo.config["user.name"] = "Someone"
    clone.repo.config["user.email"] = "someone@example.invalid"

    def race(event: Event) -> None:  # the remote moves on the same file before our push
        if event.kind == Kind.STEP and event.step == "commit" and event.state == StepState.DONE:
            (other / CF_FILE).write_text((other / CF_FILE).read_text() + "# moved\n")
            clone.commit([CF_FILE], "someone else edits the same file")
            clone.push()

    writes_before = len(lab.world.writes)
    _refused(lab, _rotate(lab, emit=race), "rebase by hand")
    assert len(lab.world.writes) == writes_before  # the cluster saw nothing
    assert remote_head(lab).message.startswith("someone else")
    _reset_to_remote(lab)

    lab.flux.stop()  # Flux stops answering: the wait must time out with the last status
    result = _rotate(lab, **{"reconcile-timeout": "1"})
    _refused(lab, result, "timed out after 1s", "Kustomization network/external-dns-cloudflare")
    assert list_runs()[0].status == "failed"
