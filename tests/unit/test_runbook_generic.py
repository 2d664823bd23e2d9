"""Runbooks are rendered from their declarations alone (issue 9, point 7).

A test-only runbook, registered for the test, with a choices parameter (its own
provider), a validated one and a secret one, goes through the real CLI (`dapper-tui
runbook list|run`) on a scratch Git repository; the providers the real runbooks use are
checked against this repository's own tree; and the front ends' sources are searched
for any registered runbook's name or parameter names.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest
from dapper.actions import registry
from dapper.actions.choices import SecretKeysOf, SopsSecretFiles, TalosNodes
from dapper.actions.engine import Engine, Runbook, RunContext, Step
from dapper.actions.events import PromptRequest
from dapper.actions.journal import Journal, list_runs
from dapper.actions.params import (
    REDACTED,
    Choice,
    ChoiceContext,
    ChoicesProvider,
    Param,
    ParamError,
    load_choices,
    preload_choices,
    resolve,
)
from dapper.backends.config import Config
from dapper.cli.main import main

SOURCE = Path(__file__).resolve().parents[2]  # this checkout: tui/, cli/, kubernetes/
CF_FILE = "kubernetes/apps/network/external-dns/cloudflare/secret.sops.yaml"
SECRET = "typed-token-9d2e61"


class FruitStand(ChoicesProvider):
    """A provider of the test's own: plain data with detail lines."""

    heading = "FRUIT  ·  ORIGIN"
    asked = 0

    def choices(self, ctx: ChoiceContext) -> list[Choice]:
        FruitStand.asked += 1
        assert ctx.repo_path.is_dir()
        return [
            Choice("apple", detail=("from the orchard",)),
            Choice("pear", "Pear (Conference)", ("from the orchard", "ripe in October")),
            Choice("quince", detail=("from the hedge",)),
        ]


def _at_least_one(value: Any) -> str | None:
    return None if value >= 1 else "must be at least 1, so that something is picked"


class PickStep(Step):
    id = "pick"
    title = "Pick the fruit"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"fruit": ctx.params["fruit"], "count": ctx.params["count"]}


class TokenStep(Step):
    id = "token"
    title = "Use the token"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"token-sha": hashlib.sha256(ctx.params["token"].encode()).hexdigest()}


class FruitPick(Runbook):
    name = "fruit-pick"
    title = "pick some fruit"
    summary = "A test-only runbook: a provider's choice, a validated count, a secret"
    needs_cluster = False
    params = (
        Param("fruit", required=True, help="which fruit", provider=FruitStand()),
        Param("count", "int", default=1, help="how many", validate=_at_least_one),
        Param("token", secret=True, required=True, label="basket token", help="opens it"),
    )

    def preflight(self, ctx: RunContext) -> None:
        pass  # no remote, no cluster: the runbook exercises the front ends only

    def steps(self, ctx: RunContext) -> list[Step]:
        return [PickStep(), TokenStep()]


@pytest.fixture
def fruit_pick() -> Iterator[type[FruitPick]]:
    registry.register(FruitPick.name, FruitPick)
    try:
        yield FruitPick
    finally:
        registry.unregister(FruitPick.name)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    repo_dir = tmp_path / "repo"
    repo = pygit2.init_repository(str(repo_dir), initial_head="main")
    (repo_dir / "README.md").write_text("scratch\n")
    repo.index.add("README.md")
    repo.index.write()
    sig = pygit2.Signature("Test", "test@example.org")
    repo.create_commit("HEAD", sig, sig, "seed", repo.index.write_tree(), [])
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'cluster_name = "test"\nrepo_path = "{repo_dir}"\n')
    return cfg


def cli(config_file: Path, *args: str) -> list[str]:
    return ["--config", str(config_file), "runbook", *args]


# -- the CLI renders a runbook it has never heard of ---------------------------------------


def test_listing_and_help_show_title_summary_params_and_choices(
    fruit_pick: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runbook", "list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "fruit-pick" in ln)
    assert "pick some fruit" in line and FruitPick.summary in line

    assert main(cli(config_file, "run", "fruit-pick", "--help")) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fruit-pick: pick some fruit\n  {FruitPick.summary}\n")
    assert re.search(r"Pear \(Conference\)\s+from the orchard  ripe in October", out)
    assert "token (required; secret: asked at a prompt" in out
    assert "count (default: 1)" in out


def test_run_with_params_journals_no_secret(
    fruit_pick: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = ["fruit=pear", "count=3", f"token={SECRET}"]
    pairs = [x for p in params for x in ("--param", p)]
    rc = main(cli(config_file, "run", "fruit-pick", *pairs, "--yes"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    [record] = list_runs()
    assert record.ok and record.outputs["pick"] == {"fruit": "pear", "count": 3}
    assert record.params["token"] == REDACTED
    assert SECRET not in record.path.read_text() and SECRET not in out + err
    want = hashlib.sha256(SECRET.encode()).hexdigest()
    assert record.outputs["token"]["token-sha"] == want


def test_an_invalid_value_is_refused_with_the_validators_line(
    fruit_pick: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--param", "fruit=apple", "--param", "count=0", "--param", "token=x"]
    assert main(cli(config_file, "run", "fruit-pick", *args)) == 2
    err = capsys.readouterr().err
    assert err == "dapper-tui runbook: count: must be at least 1, so that something is picked\n"
    assert list_runs() == []


def test_missing_params_without_a_terminal_name_the_choices(
    fruit_pick: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli(config_file, "run", "fruit-pick", "--param", "count=2")) == 2
    out = capsys.readouterr().out
    assert "fruit-pick needs --param fruit=… --param token=…" in out
    assert re.search(r"^  quince\s+from the hedge$", out, re.M)
    assert list_runs() == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_missing_params_are_asked_at_a_terminal(
    fruit_pick: Any,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal("3\n"))  # the third fruit, by number
    asked: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or SECRET)
    assert main(cli(config_file, "run", "fruit-pick", "--yes")) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+3\. quince\s+from the hedge$", out, re.M)
    assert asked == ["basket token: "]
    [record] = list_runs()
    assert record.outputs["pick"]["fruit"] == "quince"
    assert SECRET not in record.path.read_text() and SECRET not in out


def test_resume_asks_again_for_a_secret_it_never_journaled(
    fruit_pick: Any, config_file: Path
) -> None:
    config = Config(lab=False, repo_path=str(config_file.parent / "repo"))
    seen: list[str] = []
    first = Engine(
        config,
        emit=lambda e: seen.append(f"{e.step}:{e.state}"),
        cancelled=lambda: "pick:done" in seen,  # stop after the first step
    )
    given = {"fruit": "apple", "token": SECRET}
    result = first.run(FruitPick(), given, yes=True)
    assert result.cancelled and list_runs()[0].status == "unfinished"
    assert SECRET not in Journal.open(result.run_id).read().path.read_text()

    questions: list[PromptRequest] = []

    def prompt(req: PromptRequest) -> str:
        questions.append(req)
        return SECRET

    resumed = Engine(config, prompt=prompt).resume(result.run_id, FruitPick(), yes=True)
    assert resumed.ok, resumed.reason
    assert [q.secret for q in questions] == [True] and "basket token" in questions[0].question
    want = hashlib.sha256(SECRET.encode()).hexdigest()
    assert resumed.outputs["token"]["token-sha"] == want
    without_prompt = Engine(config).resume(result.run_id, FruitPick(), yes=True)
    assert without_prompt.reason == "already finished"


# -- declarations -------------------------------------------------------------------------


def test_validation_visibility_and_choice_loading() -> None:
    count = FruitPick.params[1]
    with pytest.raises(ParamError, match=r"^count: must be at least 1"):
        resolve(FruitPick.params, {"fruit": "apple", "count": "0", "token": "t"})
    shown = Param("length", shown_when=("source", "generate"))
    assert shown.shown({"source": "generate"}) and not shown.shown({"source": "typed"})
    assert count.prompt == "count" and FruitPick.params[2].prompt == "basket token"

    class Broken(ChoicesProvider):
        def choices(self, ctx: ChoiceContext) -> list[Choice]:
            raise OSError("talconfig.yaml: no such file\nsecond line")

    ctx = ChoiceContext(SOURCE)
    broken = load_choices(Param("node", provider=Broken()), ctx)
    assert broken.choices == () and broken.error == "talconfig.yaml: no such file"
    FruitStand.asked = 0
    shared = FruitPick.params[0]
    cache: dict[int, Any] = {}
    first = preload_choices(FruitPick.params, ctx, cache)
    again = preload_choices((shared,), ctx, cache)
    assert FruitStand.asked == 1 and first["fruit"] is again["fruit"]
    assert [c.shown for c in first["fruit"].choices][1] == "Pear (Conference)"


def test_the_real_providers_read_this_tree() -> None:
    ctx = ChoiceContext(SOURCE)
    nodes = {c.value: c.detail for c in TalosNodes().choices(ctx)}
    assert len(nodes) == 7
    assert nodes["talos-control-1"] == ("control plane  ·  10.100.0.50",)
    assert sum(d[0].startswith("control plane") for d in nodes.values()) == 3
    assert nodes["talos-node-gpu-1"][0].startswith("worker")

    files = {c.value: c.detail for c in SopsSecretFiles().choices(ctx)}
    assert files[CF_FILE] == ("→ network/external-dns-cloudflare  ·  keys: api-token",)
    keys = SecretKeysOf("file")
    assert keys.depends_on == ("file",)
    assert keys.choices(ChoiceContext(SOURCE, values={"file": CF_FILE})) == [Choice("api-token")]
    assert keys.choices(ChoiceContext(SOURCE)) == []


# -- the front ends know no runbook ---------------------------------------------------------

FRONT_ENDS = ("tui", "cli")
# the lab's own entry point: a bare lab tells the operator which runbook it is there for
LAB_ENTRY = ("cli/lab_cmd.py",)
# where a parameter name would be a special case; elsewhere in tui/ words such as "source"
# or "keys" name other things (a pane's column, a key binding)
RUNBOOK_UI = (
    "tui/screens/runbook.py",
    "tui/screens/runbook_run.py",
    "tui/widgets/runbook_form.py",
    "tui/widgets/runbook_view.py",
    "cli/runbook_cmd.py",
    "cli/runbook_params.py",
)


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal and f-string piece of a module, docstrings excluded."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def _identifiers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return names


def test_no_runbook_or_parameter_name_in_the_front_ends(fruit_pick: Any) -> None:
    runbooks = registry.all_runbooks()
    assert {"secret-rotate", "rekey", "fruit-pick"} <= {rb.name for rb in runbooks}
    names = {rb.name for rb in runbooks}
    params = {p.name for rb in runbooks for p in rb.params}
    sources = [
        p
        for d in FRONT_ENDS
        for p in sorted((SOURCE / d).rglob("*.py"))
        if p.relative_to(SOURCE).as_posix() not in LAB_ENTRY
    ]
    assert len(sources) > 10
    found = []
    for path in sources:
        rel = path.relative_to(SOURCE).as_posix()
        idents = _identifiers(path)
        for name in names:
            if name.replace("-", "_") in idents:
                found.append(f"{rel}: identifier {name}")
        for line, text in _literals(path):
            for name in names:
                # a path segment (kubernetes/bootstrap/...) is not the runbook's name
                if re.search(rf"(?<![\w/-]){re.escape(name)}(?![\w/-])", text):
                    found.append(f"{rel}:{line}: runbook {name} in {text!r}")
            if rel not in RUNBOOK_UI:
                continue
            for param in params:
                pieces = {text, text.removeprefix("#"), text.split("-", 1)[-1]}
                if param in pieces or text.startswith(f"{param}="):
                    found.append(f"{rel}:{line}: parameter {param} in {text!r}")
    assert found == []
