"""The console driven by keys (Textual Pilot) against the real lab through the real Collector."""

from __future__ import annotations

import pytest
from dapper.tui import format as fmt
from dapper.tui.detail_builders import plain
from dapper.tui.pane_registry import pane_registry
from dapper.tui.screens.confirm import ConfirmScreen, DialogScreen, TypedConfirmScreen
from dapper.tui.screens.detail import DetailScreen
from dapper.tui.screens.help import HelpScreen
from dapper.tui.screens.main import MainScreen
from textual.command import CommandPalette
from textual.widgets import Static

from tests.console.tui_lab import make_app, on_screen, settle


def table(app, pane):
    return app.main.panes[pane].table


def select(app, pane, key):
    t = table(app, pane)
    t.move_cursor(row=t._order.index(key))
    assert t.selected_key == key


async def refreshed(pilot, app, *sources):
    """Refresh `sources` now and wait until that refresh landed on screen."""
    before = {s: app.refreshes.get(s, 0) for s in sources}
    for s in sources:
        app.refresh_source(s)
    for _ in range(1500):
        await pilot.pause(0.02)
        if all(app.refreshes.get(s, 0) > before[s] for s in sources) and on_screen(app):
            break
    await pilot.pause()


async def test_a_focus_change_repaints_the_panes_it_touches_not_the_screen(lab, monkeypatch):
    """Textual repaints the whole screen when focus moves; at 160x48 that was most of a
    pane switch. The panes gaining and losing focus repaint themselves."""
    from textual._compositor import Compositor

    full: list[bool] = []
    original = Compositor.render_full_update

    def counted(self, simplify=False):
        full.append(True)
        return original(self, simplify=simplify)

    monkeypatch.setattr(Compositor, "render_full_update", counted)
    app = make_app(lab, still=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", "escape")  # the prompt is mounted on first use
        await pilot.pause()
        full.clear()
        for key in ("tab", "tab", "slash", "escape", "shift+tab"):
            await pilot.press(key)
            await pilot.pause()
        assert app.main.active == "vms" and app.focused is table(app, "vms")
        assert full == [], f"{len(full)} full repaints"
        border = app.main.panes["vms"].styles.border_top[1]
        assert border != app.main.panes["gpus"].styles.border_top[1]  # the active one shows


async def test_keys_typed_right_after_slash_go_to_the_prompt(lab):
    """A terminal can deliver `/ob` in one read: the keys after `/` are queued before the
    prompt opens, and must be typed into it, not run as the pane's keys (`b` opens the
    runbooks; an action key would ask to act)."""
    from textual import events

    app = make_app(lab, still=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("5")
        for key, char in (("slash", "/"), ("o", "o"), ("b", "b")):
            app.post_message(events.Key(key, char))
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        prompt = app.main.query_one("#prompt")
        assert (prompt.value, app.focused) == ("ob", prompt)
        assert app.main.filter_text == "ob"
        await pilot.press("slash", "colon")  # typed into the open prompt, they are text
        assert prompt.value == "ob/:"
        await pilot.press("escape")
        for key, char in (("slash", "/"), ("escape", None), ("b", "b")):
            app.post_message(events.Key(key, char))
        await pilot.pause()
        assert not isinstance(app.screen, MainScreen)  # after esc, keys are the pane's again
        assert app.main.filter_text == ""


async def test_panes_keys_tab_and_jump(lab):
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        main = app.main
        assert table(app, "nodes").row_count == 7
        for key, pane in [
            ("2", "vms"),
            ("3", "gpus"),
            ("4", "pools"),
            ("5", "flux"),
            ("1", "nodes"),
        ]:
            await pilot.press(key)
            assert main.active == pane
            shown = [p for p, w in main.panes.items() if w.display and w.region.height > 0]
            assert shown == [pane]  # one pane at a time at 80x24
            assert app.focused is table(app, pane)
        assert table(app, "vms").row_count == 7
        assert table(app, "gpus").row_count == 4
        assert table(app, "pools").row_count == len(app.snapshot.pools) > 0
        assert table(app, "flux").row_count == len(app.snapshot.kustomizations) > 30
        await pilot.press("tab")
        assert main.active == "vms"
        await pilot.press("shift+tab", "shift+tab")
        assert main.active == "events"
        await pilot.press("colon", *"ks", "enter")
        assert main.active == "flux"
        await pilot.press("colon", *"nosuchview", "enter")
        assert main.active == "flux"
        await pilot.press("colon", *"no", "enter")
        assert main.active == "nodes"
        header = str(app.screen.query_one("#header").render())
        assert "LAB" in header and "nodes 7/7 · vms 7/7" in header and "READ-ONLY" not in header
        keys = str(app.screen.query_one("#keys").render())
        assert keys.index("? help") < keys.index("q quit") < 78 and "c cordon" in keys


async def test_every_action_of_the_pane_is_in_the_footer_at_80x24(lab):
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        for spec in pane_registry().ordered():
            await pilot.press(spec.key)
            await pilot.pause()
            footer = app.screen.query_one("#keys").render()
            text = str(footer)
            assert len(text) <= 80 and "…" not in text, text
            assert "? help" in text and "q quit" in text, text
            for command in spec.commands:
                assert f"{command.key} {command.short or command.label.lower()}" in text, text


async def test_wide_terminal_shows_every_pane(lab):
    app = make_app(lab)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        main = app.main
        assert main.has_class("wide")
        assert all(w.display and w.region.height > 3 for w in main.panes.values())
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not main.has_class("wide")
        assert [p for p, w in main.panes.items() if w.display] == ["nodes"]
        # at 80 columns the nodes table keeps its most important columns, never wraps
        keys = [c.key for c in table(app, "nodes").columns]
        assert keys[:3] == ["name", "role", "ready"] and "cpu" in keys
        assert sum(c.width + 2 for c in table(app, "nodes").columns) <= 80


async def test_rows_update_in_place_keeping_the_cursor(lab):
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        t = table(app, "nodes")
        select(app, "nodes", "talos-node-large-2")
        before = t.showing
        await refreshed(pilot, app, "kubernetes", "proxmox", "talos")
        assert t.showing is not before and t.row_count == 7
        assert t.selected_key == "talos-node-large-2"


async def test_filter_faults_only_and_sort(lab):
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        t = table(app, "nodes")
        await pilot.press("slash", *"large")
        assert t.row_count == 3
        await pilot.press("enter")
        assert app.focused is t and t.row_count == 3
        await pilot.press("escape")
        assert t.row_count == 7
        lab.world.inject("node-notready:talos-node-large-2")
        try:
            await refreshed(pilot, app, "kubernetes")
            await pilot.press("exclamation_mark")
            assert t.row_count == 1 and t.selected_key == "talos-node-large-2"
            assert "✗1" in str(app.screen.query_one("#header").render())
            await pilot.press("2")  # faults-only holds for every pane
            assert table(app, "vms").faults_only
            await pilot.press("1", "exclamation_mark")
            assert t.row_count == 7
        finally:
            lab.world.clear("node-notready:talos-node-large-2")
        await pilot.press("5", "s")
        ks = table(app, "flux")
        assert ks.sort_column == "name"
        keys = list(ks._order)
        assert keys == sorted(keys)
        await pilot.press("s")
        assert ks.sort_column == "ready"
        ready = [ks.object(k).ready for k in ks._order]
        assert ready == sorted(ready)


async def test_detail_views_for_every_pane(lab):
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        expectations = {
            "1": ("talos-control-1", ["Talos", "etcd members", "services", "Proxmox", "Pods"]),
            "2": ("100", ["Config", "vCPU"]),
            "3": (None, ["Passthrough", "Pods holding it"]),
            "4": (None, ["Mayastor pool", "capacity"]),
            "5": (None, ["dependsOn chain", "Files of", "Conditions"]),
        }
        for key, (row, words) in expectations.items():
            await pilot.press(key)
            pane = app.main.active
            if row is not None:
                select(app, pane, row)
            shown = table(app, pane).selected_key
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen)
            body = plain(app.screen.content, 120)
            assert shown.split("/")[-1] in body
            for word in words:
                assert word in body, (pane, word)
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)


async def test_node_detail_at_80_columns_never_wraps(lab):
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        select(app, "nodes", "talos-node-gpu-1")
        await pilot.press("enter")
        await pilot.pause()
        node = app.screen.content
        text = plain(node, 78)  # the body's width inside the scroll view's padding
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 78
        conditions = app.find_row("nodes", "talos-node-gpu-1").conditions
        assert len(conditions) >= 4
        for c in conditions:  # each condition on one line, type and status apart
            row = next(line for line in lines if line.split()[:1] == [c.type])
            assert row.split()[1] == c.status, row
            if c.message:
                assert row.rstrip().endswith("…") or fmt.one_line(c.message) in row
        assert not any(line.startswith(("sufficient", "pressure")) for line in lines)


GROUPS = ("Panes", "View", "Actions", "More", "Quit", "↑↓")


async def test_help_fits_80x24_and_follows_the_pane_and_mode(lab):
    app = make_app(lab, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("5", "question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        text = help_screen.body.plain
        assert text.startswith("Keys · Flux pane") and "READ-ONLY" in text
        assert "Reconcile" not in text and "Cordon" not in text
        assert "gpu slots" in text and "age of the data" in text  # the header's numbers
        dialog = help_screen.query_one(".dialog")
        assert dialog.region.bottom <= 24 and dialog.region.right <= 80
        assert dialog.max_scroll_y == 0  # everything visible at once at 80x24
        await pilot.press("escape", "1", "enter", "question_mark")
        assert app.screen is help_screen  # kept between uses, given the keys anew
        assert app.screen.body.plain.startswith("Keys · node detail")
        shown = help_screen.query_one(Static).render()
        assert "Keys · node detail" in str(shown) and "Flux pane" not in str(shown)


async def test_a_kept_detail_screen_shows_the_row_it_is_opened_for(lab):
    app = make_app(lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        select(app, "nodes", "talos-control-1")
        await pilot.press("enter")
        first = app.screen
        assert isinstance(first, DetailScreen)
        assert "talos-control-1" in plain(first.content, 98)
        await pilot.press("escape")
        select(app, "nodes", "talos-node-large-2")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is first  # one per pane, built once
        title = plain(first.content, 98).strip().splitlines()[0]
        assert "talos-node-large-2" in title and "talos-control-1" not in title
        await pilot.press("escape", "2", "enter")
        assert isinstance(app.screen, DetailScreen) and app.screen is not first
        assert app.screen.pane == "vms"


async def test_help_and_palette(lab):
    app = make_app(lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        # opaque: a see-through backdrop blends the whole console under it at each paint
        assert app.screen.styles.background.a == 1
        text = app.screen.body.plain
        lines = text.splitlines()
        assert lines[0] == "Keys · Nodes pane"
        # the console's own keys first, grouped; the table's navigation is one last line
        order = [next(i for i, x in enumerate(lines) if x.startswith(g)) for g in GROUPS]
        assert order == sorted(order)
        assert "Cordon (asks)" in text and "Drain (type the name to confirm)" in text
        assert "Runbooks" in text  # a key bound elsewhere in the app is listed too
        assert "Cursor" not in text and lines[-1].startswith("↑↓ j k move")
        await pilot.press("escape")
        names = [name for name, _help, _cb in app.palette_commands()]
        for title in ("Nodes", "VMs", "GPUs", "Pools", "Flux"):
            assert f"Show {title}" in names
        for verb in ("Cordon node", "Drain node", "Shut down VM", "Reconcile Kust", "Suspend Kust"):
            assert any(n.startswith(verb) for n in names), verb
        assert not any(n.startswith(("Start VM", "Uncordon")) for n in names)  # nothing to do
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"show flux")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.main.active == "flux"


async def _confirm(pilot, app, *keys):
    await pilot.press(*keys)
    await pilot.pause()
    assert isinstance(app.screen, ConfirmScreen)
    await pilot.press("y")
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _typed(pilot, app, key, name):
    await pilot.press(key)
    await pilot.pause()
    assert isinstance(app.screen, TypedConfirmScreen)
    await pilot.press(*"wrong", "enter")
    assert isinstance(app.screen, TypedConfirmScreen)  # a wrong name confirms nothing
    await pilot.press(*["backspace"] * 5, *name, "enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def writes(lab, api, op_part):
    return [w for w in lab.world.writes if w.api == api and op_part in w.op]


async def test_actions_confirm_then_run_without_blocking(lab):
    app = make_app(lab)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        node = "talos-node-large-3"
        select(app, "nodes", node)
        # cancel first: nothing happens
        n0 = len(lab.world.writes)
        await pilot.press("c")
        await pilot.press("escape")
        assert len(lab.world.writes) == n0
        await _confirm(pilot, app, "c")
        await refreshed(pilot, app, "kubernetes")
        assert table(app, "nodes").object(node).unschedulable
        assert writes(lab, "kubernetes", "nodes")
        # a cordon reads as kubectl prints it, in the row and in the header's count
        row = table(app, "nodes").get_row(node)
        assert any(str(c) == "Ready,SchedulingDisabled" for c in row), row
        assert "nodes 6/7" in str(app.screen.query_one("#header").render())
        await _confirm(pilot, app, "u")
        await refreshed(pilot, app, "kubernetes")
        assert not table(app, "nodes").object(node).unschedulable
        before = len(writes(lab, "kubernetes", "eviction"))
        await _typed(pilot, app, "d", node)
        assert len(writes(lab, "kubernetes", "eviction")) > before
        await refreshed(pilot, app, "kubernetes")
        assert table(app, "nodes").object(node).unschedulable
        await _confirm(pilot, app, "u")

        await pilot.press("2")
        select(app, "vms", "106")
        await _typed(pilot, app, "x", "talos-node-large-3")
        await refreshed(pilot, app, "proxmox")
        assert table(app, "vms").object("106").status == "stopped"
        await _confirm(pilot, app, "o")
        await refreshed(pilot, app, "proxmox")
        assert table(app, "vms").object("106").status == "running"
        assert len(writes(lab, "proxmox", "status")) >= 2

        await pilot.press("5")
        select(app, "flux", "observability/grafana")
        patches = len(writes(lab, "kubernetes", "kustomizations"))
        await _confirm(pilot, app, "r")
        await _confirm(pilot, app, "R")
        assert len(writes(lab, "kubernetes", "kustomizations")) >= patches + 2
        await _confirm(pilot, app, "S")
        await refreshed(pilot, app, "kubernetes")
        assert table(app, "flux").object("observability/grafana").suspended
        await pilot.press("r")  # reconcile of a suspended one is refused before asking
        assert not isinstance(app.screen, DialogScreen)
        await _confirm(pilot, app, "S")
        await refreshed(pilot, app, "kubernetes")
        assert not table(app, "flux").object("observability/grafana").suspended
        assert app._activity == {}


async def test_not_ready_reads_as_kubectl_says_with_the_reason_one_key_away(lab):
    node = "talos-node-large-2"
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        lab.world.inject(f"node-notready:{node}")
        try:
            await refreshed(pilot, app, "kubernetes")
            row = [str(c) for c in table(app, "nodes").get_row(node)]
            assert "NotReady" in row and "Unknown" not in row, row
            select(app, "nodes", node)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen)
            shown = plain(app.screen.content, 200)  # the reason, in the condition's words
            assert "NotReady (Ready=Unknown, NodeStatusUnknown: Kubelet stopped" in shown
        finally:
            lab.world.clear(f"node-notready:{node}")
        await refreshed(pilot, app, "kubernetes")


async def test_failing_source_marks_only_its_panes(lab):
    app = make_app(lab)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot, app)
        panes = app.main.panes
        assert not panes["vms"].banner.display
        lab.world.inject("api-down:proxmox")
        try:
            await refreshed(pilot, app, "proxmox")
            banner = str(panes["vms"].banner.render())
            assert "stale" in banner and "proxmox" in banner and "refused" in banner
            header = str(app.screen.query_one("#header").render())
            assert "⚠ stale: proxmox " in header and "vms 7/7" in header  # last good data
            faultline = str(app.screen.query_one("#faultline").render())
            assert "proxmox" in faultline and "refused" in faultline
            assert table(app, "vms").row_count == 7  # last good data stays
            for calm in ("flux", "pools"):
                assert not panes[calm].banner.display, calm
            assert app.is_running
        finally:
            lab.world.clear("api-down:proxmox")
        await refreshed(pilot, app, "proxmox")
        assert not panes["vms"].banner.display


async def test_read_only_action_keys_say_so_and_write_nothing(lab):
    app = make_app(lab, read_only=True)
    before = list(lab.world.writes)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        assert "READ-ONLY" in str(app.screen.query_one("#header").render())
        keys = str(app.screen.query_one("#keys").render())
        assert "? help" in keys and "cordon" not in keys and "│" not in keys
        keys = ["r", "R", "S", "c", "u", "d", "o", "x", "y", "enter", "escape"]
        for pane in "123456":
            await pilot.press(pane)
            spec = pane_registry().get(app.main.active)
            for key in keys:
                app._notifications.clear()
                await pilot.press(key)
                assert not isinstance(app.screen, DialogScreen)
                said = [n.message for n in app._notifications]
                if any(c.key == key for c in spec.commands):  # one line says why
                    assert len(said) == 1 and said[0].startswith("READ-ONLY: no "), said
                    assert "\n" not in said[0]
            while not isinstance(app.screen, MainScreen):
                await pilot.press("escape")
        commands = list(app.palette_commands())
        assert not any(
            n.startswith(("Cordon", "Drain", "Reconcile", "Start VM")) for n, *_ in commands
        )
        details: set[str] = set()
        for name, _help, callback in commands:
            kind = name.split(" ")[:2]
            if name == "Quit" or (kind[0] == "Detail" and kind[1] in details):
                continue  # one detail per kind is enough: they are the same read-only view
            details.add(kind[1]) if kind[0] == "Detail" else None
            callback()
            await pilot.pause()
            assert not isinstance(app.screen, DialogScreen), name
            while not isinstance(app.screen, MainScreen):
                await pilot.press("escape")
        # and the app-level entry refuses even if called directly
        app.request_command("cordon", "nodes", "talos-node-large-1")
        await pilot.pause()
        assert not isinstance(app.screen, DialogScreen)
        await app.workers.wait_for_complete()
    assert lab.world.writes == before


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_keys(lab, key):
    app = make_app(lab, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press(key)
        await pilot.pause()
        assert not app.is_running


STARTUP_PROBE = """
import sys
from dapper.backends.config import Config
from dapper.cli.console_cmd import Connector
from dapper.tui.app import DapperApp

class Probe(DapperApp):
    def on_ready(self):  # the first frame is on screen
        self.exit()

async def never():
    import asyncio
    await asyncio.Event().wait()

Probe(Config(), never).run(headless=True, size=(160, 48))
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
print("composed", "dapper.tui.screens.main" in sys.modules)
"""


def test_first_frame_imports_no_client_library(tmp_path):
    """Importing and composing the console must not pull a client library onto that path."""
    import subprocess
    import sys

    heavy = {"kubernetes", "proxmoxer", "grpclib", "pygit2", "ruamel"}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE.format(heavy=heavy)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, composed = out.stdout.splitlines()[-2:]
    assert composed == "composed True"
    assert loaded == "", f"imported before the first frame: {loaded}"
