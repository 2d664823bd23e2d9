"""Runbooks from the console, end to end on the lab (Textual Pilot, real engine, real lab).

The console is built as the CLI builds it (tests/console/tui_lab.make_app); its repository is
the lab's scratch clone. Each test checks what the lab saw: the commit on the bare remote
with its trailers, the live Secret's hashes (never plaintext), the Kustomizations'
applied revision, and the recorded Kubernetes writes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from dapper.actions import registry
from dapper.actions.engine import Runbook, RunContext, Step
from dapper.actions.journal import list_runs
from dapper.actions.params import Choice, ChoiceContext, ChoicesProvider, Param
from dapper.backends.clients.gitrepo import GitRepo, parse_trailers
from dapper.backends.clients.kube import KubeBackend
from dapper.lab.runtime import start_lab
from dapper.lab.world import Timings
from dapper.tui.screens.runbook import PromptScreen, RunbooksScreen, RunScreen
from dapper.tui.widgets.runbook_form import ParamForm
from textual.widgets import Button, DataTable, Input, OptionList, SelectionList

from tests.console.tui_lab import make_app
from tests.waiting import eventually_async

CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"
CF_SECRET = ("network", "external-dns-cloudflare-secret")
CF_KS = ("network", "external-dns-cloudflare")
TIMINGS = Timings(reconcile_interval=600.0)  # no periodic passes: only pushes and requests
WAIT = 60.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    running = start_lab(directory=tmp_path / "lab", timings=TIMINGS)
    try:
        running.flux.reconcile_now(timeout=60)
        yield running
    finally:
        client = getattr(running, "_test_kube", None)
        if client is not None:
            client.close()
        running.stop()


def kube(lab: Any) -> KubeBackend:
    """One client per lab, closed before the lab stops."""
    client = getattr(lab, "_test_kube", None)
    if client is None:
        client = KubeBackend.from_kubeconfig(lab.config.kubeconfig, context=lab.config.kube_context)
        lab._test_kube = client
    return client


def remote_head(lab: Any) -> pygit2.Commit:
    repo = lab.remote.repository()
    return repo[repo.references["refs/heads/main"].target]


def live_hashes(lab: Any, ns_name: tuple[str, str]) -> dict[str, str]:
    return dict(kube(lab).secret(*ns_name).hashes)


async def until(pilot: Any, cond: Any, what: str, timeout: float = WAIT) -> None:
    await eventually_async(cond, timeout=timeout, interval=0.02, message=what, pause=pilot.pause)


async def open_form(pilot: Any, app: Any, runbook: str) -> RunbooksScreen:
    """`b`, then the runbook chosen in the list (arrow keys, as an operator would)."""
    await pilot.press("b")
    await until(pilot, lambda: isinstance(app.screen, RunbooksScreen), "the runbooks screen")
    screen: RunbooksScreen = app.screen  # type: ignore[assignment]
    await until(pilot, lambda: screen.loaded, "runbooks to load")
    rb_list = screen.query_one("#rb-list", OptionList)
    rb_list.focus()
    names = list(screen.runbooks)
    for _ in range(names.index(runbook)):
        await pilot.press("down")
    await pilot.press("enter")
    await until(
        pilot,
        lambda: screen.form is not None and screen.form.runbook.name == runbook,
        f"the {runbook} form",
    )
    await pilot.pause()
    return screen


def set_input(form: ParamForm, name: str, value: str) -> None:
    form.query_one(f"#param-{name}", Input).value = value


async def choose_file(pilot: Any, form: ParamForm, path: str) -> None:
    table = form.query_one("#param-file", DataTable)
    table.focus()
    rows = [str(k.value) for k in table.rows]
    for _ in range(rows.index(path) - table.cursor_row):
        await pilot.press("down")
    await pilot.pause()
    keys = form.query_one("#param-keys", SelectionList)
    await until(pilot, lambda: keys.option_count > 0, "the file's keys")


async def start_run(pilot: Any, app: Any) -> RunScreen:
    await pilot.press("ctrl+s")
    await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
    return app.screen  # type: ignore[return-value]


async def confirm_and_finish(pilot: Any, run: RunScreen) -> Any:
    await until(pilot, lambda: run.phase == "asking", "the preview")
    await pilot.press("y")
    await until(pilot, lambda: run.finished, "the run to finish")
    return run.result


def preview_shown(run: RunScreen) -> str:
    return str(run.query_one("#run-preview").render())


def assert_commit(lab: Any, runbook: str, run_id: str) -> pygit2.Commit:
    head = remote_head(lab)
    assert head.message.startswith(f"runbook({runbook}): ")
    trailers = parse_trailers(head.message)
    assert trailers["Runbook-Run"] == run_id
    sig = GitRepo.open(lab.config.repo_path).signature()
    assert trailers["Operator"] == f"{sig.name} <{sig.email}>"
    return head


async def test_secret_rotate_from_the_console(lab: Any) -> None:
    before = live_hashes(lab, CF_SECRET)["api-token"]
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        form = screen.form
        assert form is not None
        files = form.query_one("#param-file", DataTable)
        cell = str(files.get_row(CF_FILE)[0])  # the path, its owner and its key NAMES
        assert cell == f"{CF_FILE}\n  → {'/'.join(CF_KS)}  ·  keys: api-token"
        await choose_file(pilot, form, CF_FILE)
        keys = form.query_one("#param-keys", SelectionList)
        assert keys.selected == ["api-token"]  # the file's only key comes pre-selected
        set_input(form, "reconcile-timeout", "30")
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        shown = preview_shown(run)
        assert "<secret: new value>" in shown and CF_FILE in shown
        assert "git push origin main" in shown
        result = await confirm_and_finish(pilot, run)
        assert result is not None and result.ok, run.query_one("#run-result").render()
        states = {step: run.board.shown_state(step) for step in run.board.rows}
        assert states["edit"] == "done" and states["commit"] == "done"
        assert states["restart"] == "skipped"
        assert "✓ done" in str(run.query_one("#run-result").render())

    head = assert_commit(lab, "secret-rotate", result.run_id)
    assert head.message.startswith(f"runbook(secret-rotate): rotate api-token in {CF_FILE}")
    after = live_hashes(lab, CF_SECRET)["api-token"]
    assert after != before
    ks = kube(lab).kustomization(*CF_KS)
    assert ks.ready == "True" and ks.applied_revision == f"main@sha1:{head.id}"
    assert list_runs()[0].run_id == result.run_id and list_runs()[0].status == "done"


async def test_rekey_from_the_console(lab: Any) -> None:
    before = live_hashes(lab, ("flux-system", "sops-age"))["age.agekey"]
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "rekey")
        assert screen.form is not None
        set_input(screen.form, "reconcile-timeout", "30")
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        assert "Give the cluster's sops-age Secrets the new key" in preview_shown(run)
        result = await confirm_and_finish(pilot, run)
        assert result is not None and result.ok, run.query_one("#run-result").render()

    head = assert_commit(lab, "rekey", result.run_id)
    revisions = result.outputs["reconcile"]["revisions"]
    assert "flux-system/flux-system" in revisions
    for key in revisions:
        ks = kube(lab).kustomization(*key.split("/"))
        assert ks.ready == "True" and ks.applied_revision == f"main@sha1:{head.id}", key
    assert live_hashes(lab, ("flux-system", "sops-age"))["age.agekey"] != before


async def test_abort_at_the_preview_changes_nothing(lab: Any) -> None:
    head, writes = remote_head(lab).id, list(lab.world.writes)
    before = live_hashes(lab, CF_SECRET)
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        assert screen.form is not None
        await choose_file(pilot, screen.form, CF_FILE)
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        await pilot.press("n")
        await until(pilot, lambda: run.finished, "the run to end")
        assert run.result.cancelled and not run.result.ok
        assert run.result.reason == "cancelled: nothing changed"
        await pilot.press("escape")
        assert isinstance(app.screen, RunbooksScreen)
    assert remote_head(lab).id == head
    assert list(lab.world.writes) == writes
    assert live_hashes(lab, CF_SECRET) == before
    assert GitRepo.open(lab.config.repo_path).dirty_paths("kubernetes/") == []
    assert list_runs() == []  # nothing was journaled: nothing started


async def test_typed_values_abort_mid_run_then_resume(lab: Any) -> None:
    value = "typed-in-the-console-5f1c"
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        form = screen.form
        assert form is not None
        await choose_file(pilot, form, CF_FILE)
        typed = next(b for b in form.query("RadioButton") if b.name == "typed")
        typed.value = True  # type: ignore[attr-defined]
        await pilot.pause()
        assert not form.query_one("#row-length").display  # generate-only inputs hide
        set_input(form, "reconcile-timeout", "30")
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), "the value prompt")
        assert app.screen.query_one("#answer", Input).password
        await pilot.press("escape")  # stop the run at the prompt: resumable
        await until(pilot, lambda: run.finished, "the run to stop")
        assert run.result.cancelled and "resume run" in run.result.reason
        assert list_runs()[0].status == "unfinished"
        names = [name for name, _help, _cb in app.palette_commands()]
        assert f"Runbook: resume {run.run_id}" in names
        await pilot.press("escape")

        runs = screen.query_one("#rb-runs", DataTable)
        await until(pilot, lambda: runs.row_count == 1, "the unfinished run in the list")
        runs.focus()
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the resumed run")
        resumed: RunScreen = app.screen  # type: ignore[assignment]
        assert resumed.resume_id == run.run_id
        await until(pilot, lambda: resumed.phase == "asking", "the resumed preview")
        await pilot.press("enter")
        for _ in range(2):  # asked twice
            await until(pilot, lambda: isinstance(app.screen, PromptScreen), "the prompt")
            prompt = app.screen
            await pilot.press(*value, "enter")
            await until(pilot, lambda p=prompt: app.screen is not p, "the prompt to close")
        await until(pilot, lambda: resumed.finished, "the resumed run", timeout=WAIT)
        assert resumed.result.ok, resumed.query_one("#run-result").render()
        shown = resumed.run_log.text + run.run_log.text + preview_shown(resumed)
        assert value not in shown

    run_id = run.run_id
    head = assert_commit(lab, "secret-rotate", run_id)
    repo = lab.remote.repository()
    assert sum(f"Runbook-Run: {run_id}" in c.message for c in repo.walk(head.id)) == 1
    want = hashlib.sha256(value.encode()).hexdigest()
    assert live_hashes(lab, CF_SECRET)["api-token"] == want
    record = list_runs()[0]
    assert record.run_id == run_id and record.status == "done"
    assert value not in record.path.read_text()


async def test_read_only_console_previews_but_cannot_run(lab: Any) -> None:
    head, writes = remote_head(lab).id, list(lab.world.writes)
    app = make_app(lab, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        assert "Preview" in str(screen.query_one("#start", Button).label)
        assert screen.form is not None
        await choose_file(pilot, screen.form, CF_FILE)
        run = await start_run(pilot, app)
        assert run.dry_run
        await until(pilot, lambda: run.finished, "the dry run")
        assert run.result.ok and run.result.dry_run and run.phase == "finished"
        assert "<secret: new value>" in preview_shown(run)
        await pilot.press("y", "enter")  # nothing to confirm: no effect
        names = [name for name, _help, _cb in app.palette_commands()]
        assert "Runbook: rotate a secret" in names
        assert not any(n.startswith("Runbook: resume") for n in names)
    assert remote_head(lab).id == head
    assert list(lab.world.writes) == writes
    assert list_runs() == []


def test_cancel_during_a_wait_stops_there_and_resumes(lab: Any) -> None:
    """The console's Abort (the engine's `cancelled` hook) once the reconcile wait began:
    the run stops at the wait or the next step, stays resumable and resumes to one commit."""
    from dapper.actions import registry
    from dapper.actions.engine import Engine

    seen: list[str] = []

    def emit(event: Any) -> None:
        seen.append(event.message)

    params = {"file": CF_FILE, "keys": "api-token", "reconcile-timeout": "30"}
    engine = Engine(lab.config, emit=emit, cancelled=lambda: any("waiting for" in m for m in seen))
    result = engine.run(registry.get("secret-rotate"), params, yes=True)
    assert result.cancelled and not result.ok and "resume run" in result.reason
    record = list_runs()[0]
    assert record.status == "unfinished" and record.steps["push"] == "verified"
    resumed = Engine(lab.config).resume(result.run_id, registry.get("secret-rotate"), yes=True)
    assert resumed.ok, resumed.reason
    head = assert_commit(lab, "secret-rotate", result.run_id)
    assert (
        sum(
            f"Runbook-Run: {result.run_id}" in c.message
            for c in lab.remote.repository().walk(head.id)
        )
        == 1
    )


# -- a runbook the console has never heard of renders from its declaration ------------------

VARIETIES = {"apple": ("cox", "gala"), "pear": ("conference",), "quince": ()}


class Orchard(ChoicesProvider):
    heading = "FRUIT  ·  WHERE IT GROWS"

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        assert (ctx.repo_path / ".git").exists() and ctx.snapshot is not None  # the console's
        return [
            Choice("apple", detail=("orchard",)),
            Choice("pear", "Pear", ("orchard", "ripe in October")),
            Choice("quince", detail=("hedge",)),
        ]


class VarietiesOf(ChoicesProvider):
    depends_on = ("fruit",)

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        return [Choice(v) for v in VARIETIES[str(ctx.values["fruit"])]]


class Harvest(Step):
    id = "harvest"
    title = "Harvest"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        token = hashlib.sha256(ctx.params["token"].encode()).hexdigest()
        return {
            "fruit": ctx.params["fruit"],
            "varieties": list(ctx.params["varieties"]),
            "count": ctx.params["count"],
            "token-sha": token,
        }


class Harvesting(Runbook):
    name = "harvest-test"
    title = "harvest some fruit"
    summary = "A test-only runbook: picked from a provider, a dependent pick, a secret"
    needs_cluster = False
    params = (
        Param("fruit", required=True, hint="↑↓ picks the fruit", provider=Orchard()),
        Param("varieties", "list", required=True, provider=VarietiesOf()),
        Param(
            "count",
            "int",
            default=1,
            help="how many",
            validate=lambda n: None if n >= 1 else "pick at least one",
        ),
        Param("token", secret=True, required=True, label="basket token"),
    )

    def preflight(self, ctx: RunContext) -> None:
        pass

    def steps(self, ctx: RunContext) -> list[Step]:
        return [Harvest()]


async def test_a_test_only_runbook_renders_and_runs_from_its_declaration(lab: Any) -> None:
    secret = "basket-token-3a9f"
    registry.register(Harvesting.name, Harvesting)
    try:
        app = make_app(lab)
        async with app.run_test(size=(120, 40)) as pilot:
            names = [name for name, _help, _cb in app.palette_commands()]
            assert "Runbook: harvest some fruit" in names
            screen = await open_form(pilot, app, Harvesting.name)
            form = screen.form
            assert form is not None
            assert Harvesting.summary in str(screen.query_one("#rb-about").render())
            fruits = form.query_one("#param-fruit", DataTable)
            assert [str(k.value) for k in fruits.rows] == ["apple", "pear", "quince"]
            assert str(fruits.get_row("pear")[0]) == "Pear\n  orchard\n  ripe in October"
            varieties = form.query_one("#param-varieties", SelectionList)
            await until(pilot, lambda: varieties.option_count == 2, "the apple varieties")
            fruits.focus()
            await pilot.press("down")  # pear: its one variety comes pre-selected
            await until(pilot, lambda: varieties.selected == ["conference"], "pear's variety")
            token = form.query_one("#param-token", Input)
            assert token.password
            token.value = secret
            set_input(form, "count", "0")
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert isinstance(app.screen, RunbooksScreen)  # refused: "count: pick at least one"
            set_input(form, "count", "2")
            run = await start_run(pilot, app)
            result = await confirm_and_finish(pilot, run)
            assert result is not None and result.ok, run.query_one("#run-result").render()
            assert secret not in run.run_log.text + preview_shown(run)
    finally:
        registry.unregister(Harvesting.name)
    outputs = result.outputs["harvest"]
    assert outputs["fruit"] == "pear" and outputs["varieties"] == ["conference"]
    assert outputs["count"] == 2
    assert outputs["token-sha"] == hashlib.sha256(secret.encode()).hexdigest()
    record = list_runs()[0]
    assert record.run_id == result.run_id and secret not in record.path.read_text()


RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
SHA = re.compile(r"\b[0-9a-f]{40}\b|\b[0-9a-f]{12}\b")
CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\b")


def _masked(text: str) -> str:
    text = RUN_ID.sub("YYYYMMDD-HHMMSS-xxxxxx", text)
    return CLOCK.sub("hh:mm:ss", SHA.sub(lambda m: "0" * len(m.group()), text))


def test_snapshot_of_a_finished_rotation(snap_compare: Any, lab: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(RunScreen, "mask", staticmethod(_masked))
    lab.flux.poll_interval = 600.0  # Flux reacts to the reconcile request only: one picture

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        screen = await open_form(pilot, app, "secret-rotate")
        assert screen.form is not None
        await choose_file(pilot, screen.form, CF_FILE)
        set_input(screen.form, "reconcile-timeout", "30")
        run = await start_run(pilot, app)
        result = await confirm_and_finish(pilot, run)
        assert result.ok, run.query_one("#run-result").render()
        await pilot.pause()

    app = make_app(lab, still=True)
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


async def test_a_malformed_journal_is_one_line_and_hides_no_run(lab: Any) -> None:
    from dapper.actions.journal import Journal, runs_dir

    good = Journal.create("20260101-000000-aaaaaa")
    good.start(
        run_id="20260101-000000-aaaaaa",
        runbook="rekey",
        params={},
        operator="op",
        repo=lab.config.repo_path,
        head="",
    )
    (runs_dir() / "20260101-000001-bbbbbb.jsonl").write_bytes(b"[1]\n")
    app = make_app(lab)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("b")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen), "the runbooks screen")
        screen: RunbooksScreen = app.screen  # type: ignore[assignment]
        await until(pilot, lambda: screen.loaded, "runbooks to load")
        assert list(screen.runs) == ["20260101-000000-aaaaaa"]
        await until(pilot, lambda: len(app._notifications) > 0, "the notification")
        shown = [n.message for n in app._notifications]
        assert shown == [
            "skipped unreadable journal 20260101-000001-bbbbbb.jsonl: line 1 is not a JSON object"
        ]


async def test_a_hang_up_mid_run_leaves_it_resumable(lab: Any) -> None:
    """SIGHUP (what a dropped SSH session sends) while a run waits for Flux: the console
    leaves, the run stops at its next safe point and is journaled resumable, and the
    process waits for that before it ends; a resume finishes it with one commit."""
    from dapper.actions.engine import Engine
    from dapper.tui.screens.runbook_run import IN_FLIGHT

    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        form = screen.form
        assert form is not None
        await choose_file(pilot, form, CF_FILE)
        set_input(form, "reconcile-timeout", "120")
        lab.flux.stop()  # the reconcile wait lasts until the hang-up
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        await pilot.press("y")
        await until(pilot, lambda: "waiting for Kustomization" in run.run_log.text, "the wait")
        app.hang_up()  # what the SIGHUP handler calls
        await pilot.pause()
    assert IN_FLIGHT.wait(60)
    record = list_runs()[0]
    assert record.status == "unfinished"
    lab.flux.start()
    result = Engine(lab.config).resume(record.run_id, registry.get("secret-rotate"), yes=True)
    assert result.ok, result.reason
    repo = lab.remote.repository()
    tip = repo.references["refs/heads/main"].target
    commits = [c for c in repo.walk(tip) if f"Runbook-Run: {record.run_id}" in c.message]
    assert len(commits) == 1


async def test_the_run_screen_at_80x24_hides_nothing_silently(lab: Any) -> None:
    """Steps that do not fit say so, a SOPS file keeps its own name in the form, and a
    diff's `--- path` header stays on one line."""
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_form(pilot, app, "secret-rotate")
        assert screen.form is not None
        files = screen.form.query_one("#param-file", DataTable)
        width = screen.form.content_size.width
        for row in range(files.row_count):
            shown = files.get_row_at(row)[0].plain.splitlines()[0]
            assert len(shown) <= width and shown.endswith(".yaml"), shown
        await choose_file(pilot, screen.form, CF_FILE)
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        await pilot.pause()
        board = run.board
        assert board.border_title == f"Steps ({len(board.rows)})"
        hidden = len(board._lines) > board.scrollable_content_region.height
        assert hidden == ("more" in str(board.border_subtitle)), board._lines
        preview = str(run.query_one("#run-preview").render()).splitlines()
        headers = [line for line in preview if line.strip().startswith(("---", "+++"))]
        assert headers and all(".yaml" in line for line in headers), headers
        await pilot.press("n")
        await until(pilot, lambda: run.finished, "the run to end")


async def test_node_replace_from_a_node_row(lab: Any) -> None:
    """A dead node's row, R: the runbook opens on that node; the preview shows the impact
    first; confirmed, the node comes back Ready on a new VM."""
    from dapper.tui.widgets.table import ResourceTable

    from tests.console.tui_lab import settle

    lab.world.inject("vm-destroyed:talos-node-large-1")
    app = make_app(lab)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        await pilot.press("1")
        table = app.screen.query_one("#table-nodes", ResourceTable)
        table.focus()
        for _ in range(12):
            if table.selected_key == "talos-node-large-1":
                break
            await pilot.press("down")
        assert table.selected_key == "talos-node-large-1"
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RunbooksScreen), "the runbooks screen")
        screen: RunbooksScreen = app.screen  # type: ignore[assignment]
        await until(
            pilot,
            lambda: screen.form is not None and screen.form.runbook.name == "node-replace",
            "the node-replace form",
        )
        form = screen.form
        assert form is not None
        nodes = form.query_one("#param-node", DataTable)
        await until(pilot, lambda: nodes.row_count > 0, "the nodes of talconfig.yaml")
        await until(pilot, lambda: form.values().get("node") == "talos-node-large-1", "preset")
        set_input(form, "timeout", "60")
        run = await start_run(pilot, app)
        await until(pilot, lambda: run.phase == "asking", "the preview")
        shown = preview_shown(run)
        assert "worker + storage at 10.100.0.54" in shown
        assert "old VM: none of that name on Proxmox" in shown
        result = await confirm_and_finish(pilot, run)
        assert result is not None and result.ok, run.query_one("#run-result").render()
    assert lab.world.node_ready("talos-node-large-1")


async def test_bootstrap_from_the_console_on_a_bare_host(tmp_path: Path) -> None:
    """The console opens on a bare host (nothing answers yet), runs bootstrap from the
    runbooks screen, and then shows the cluster it built: seven Ready nodes."""
    bare = start_lab(
        directory=tmp_path / "lab",
        timings=Timings(reconcile_interval=600.0, boot=0.05, clone=0.05, task=0.02, install=0.05),
        stage="bare",
    )
    try:
        app = make_app(bare)
        async with app.run_test(size=(160, 48)) as pilot:
            screen = await open_form(pilot, app, "bootstrap")
            form = screen.form
            assert form is not None
            set_input(form, "timeout", "60")
            run = await start_run(pilot, app)
            await until(pilot, lambda: run.phase == "asking", "the preview")
            shown = preview_shown(run)
            assert "qm clone 9000 100 --name talos-control-1 --full" in shown
            assert "talosctl bootstrap -n 10.100.0.50" in shown
            result = await confirm_and_finish(pilot, run)
            assert result is not None and result.ok, run.query_one("#run-result").render()
            await pilot.press("escape")
            await pilot.press("escape")
            await until(
                pilot,
                lambda: sum(n.ready == "True" for n in app.snapshot.nodes) == 7,
                "the console to show the cluster it built",
            )
    finally:
        bare.stop()
