"""`dapper-tui talos genconfig`: the tree's Talos machine configs, as `talhelper genconfig`.

Reads kubernetes/bootstrap/talos/ (talconfig.yaml, talenv.yaml, patches/, and
talsecret.sops.yaml decrypted in memory), writes `<clusterName>-<hostname>.yaml` per node
and `talosconfig`, 0600, by default into the git-ignored clusterconfig/ beside them; one
line per file written. The age key is the configuration's `sops_age_key_file`, else sops's
own lookup; with no configuration at all the lab's key is tried too, as the other
commands run on the lab then. Exit 0 written, 1 not generated, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROG = "dapper-tui talos genconfig"
CLUSTERCONFIG_IGNORE = "*\n!.gitignore\n"


def _identities(config: Any) -> list[Any]:
    from dapper.backends.sops.keys import load_identities, read_identity_file

    if config.sops_age_key_file:
        return read_identity_file(config.sops_age_key_file)
    found = load_identities()
    if config.lab and not config.source:  # no configuration: the lab's key as well
        from dapper.lab.runtime import LAB_KEY

        found += read_identity_file(LAB_KEY)
    return found


def _ensure_ignored(out_dir: Path) -> None:
    """clusterconfig/ keeps a .gitignore that ignores everything but itself."""
    ignore = out_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text(CLUSTERCONFIG_IGNORE)


def run(args: argparse.Namespace) -> int:
    from dapper.backends.config import ConfigError, load_config
    from dapper.cli.logsetup import setup_logging

    setup_logging(console=False)
    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    configured_repo = config.repo_path if config.source else ""
    repo = Path(args.repo or configured_repo or ".")
    from dapper.backends.talosgen.talconfig import TALCONFIG, talos_dir

    if not (talos_dir(repo) / TALCONFIG).is_file():
        print(f"{PROG}: {talos_dir(repo) / TALCONFIG}: no such file", file=sys.stderr)
        return 2
    default_out = talos_dir(repo) / "clusterconfig"
    out_dir = Path(args.out) if args.out else default_out
    try:
        return _generate(repo, out_dir, args.node, config, default=not args.out)
    except Exception as exc:  # one line for the operator; the log has the traceback
        from dapper.backends.errors import BackendError
        from dapper.backends.sops.errors import SopsError

        log.debug("talos genconfig failed", exc_info=True)
        if isinstance(exc, BackendError | SopsError):
            reason = str(exc)
        elif isinstance(exc, OSError):
            reason = f"{exc.filename or out_dir}: {exc.strerror or exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        lines = reason.splitlines()
        print(f"{PROG}: {lines[0] if lines else type(exc).__name__}", file=sys.stderr)
        return 1


def _generate(
    repo: Path, out_dir: Path, nodes: list[str] | None, config: Any, *, default: bool
) -> int:
    from dapper.backends.private_files import private_dir
    from dapper.backends.talosgen.generate import generate_configs, write_configs

    generated = generate_configs(repo, _identities(config), nodes=nodes)
    if default:  # ignored before the first secret lands there
        _ensure_ignored(private_dir(out_dir))
    written = write_configs(generated, out_dir)
    for path in written:
        print(f"wrote {path}")
    log.info("talos genconfig: wrote %d files to %s", len(written), out_dir)
    return 0
