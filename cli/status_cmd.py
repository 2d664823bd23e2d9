"""`dapper-tui status [--json]`: the joined snapshot once; exit 0 healthy, 1 degraded, 2 unusable.

Monitoring scripts and the SSH front door build on this: the JSON shape is stable
(`snapshot_to_json`), and the text form is one screen a human reads at a glance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from dapper.backends.config import ConfigError, load_config
from dapper.backends.model import ClusterSnapshot, Count, summarize
from dapper.backends.snapshot.snapshot_json import snapshot_to_json
from dapper.cli.logsetup import setup_logging


def render_text(s: ClusterSnapshot) -> str:
    sm = summarize(s)
    ro = "  READ-ONLY" if s.read_only else ""
    name = s.cluster if s.cluster == s.mode else f"{s.cluster} {s.mode}"
    down = {src.source for src in s.sources if not src.ok}

    def part(label: str, count: Count, word: str = "") -> str:
        """`vms 7/7 running`, or `vms ? (proxmox unreachable)`: unknown is not zero."""
        if not count.known:
            why = "unreachable" if count.source in down else "not read yet"
            return f"{label} ? ({count.source} {why})"
        return f"{label} {count}" + (f" {word}" if word else "")

    cordoned = f" ({sm.nodes.warnings} SchedulingDisabled)" if sm.nodes.warnings else ""
    lines = [
        "  ".join(
            [
                f"{name}{ro}",
                part("nodes", sm.nodes, "Ready") + cordoned,
                part("vms", sm.vms, "running"),
                part("gpu", sm.gpus, "slots"),
                part("pools", sm.pools, "Online"),
                part("ks", sm.kustomizations, "Ready"),
            ]
        ),
        "sources: "
        + "  ".join(
            f"{src.source} {src.health.value}" + (f" ({src.reason})" if src.reason else "")
            for src in s.sources
        ),
    ]
    lines += [f"! insecure {line}" for line in s.insecure_tls]
    for f in s.faults:
        mark = "✗" if f.severity == "error" else "!"
        lines.append(f"{mark} {f.pane:<6} {f.subject}  {f.message}")
    if not s.faults:
        lines.append("no faults")
    return "\n".join(lines)


async def _collect(cfg, timeout: float) -> ClusterSnapshot:
    from dapper.backends.snapshot.collector import Collector

    collector = Collector(cfg, timeout=timeout)
    try:
        return await collector.refresh_all()
    finally:
        await collector.close()


def run(args: argparse.Namespace) -> int:
    setup_logging(console=False)
    try:
        cfg = load_config(args.config, read_only=True)
    except ConfigError as exc:
        print(f"dapper-tui status: {exc}", file=sys.stderr)
        return 2
    from dapper.backends.configcheck import static_problems

    unusable = static_problems(cfg)
    if unusable:
        for line in unusable:
            print(f"dapper-tui status: {line}", file=sys.stderr)
        return 2
    lab = None
    if cfg.lab and not cfg.source:
        from dapper.lab.runtime import start_lab

        lab = start_lab(read_only=True)
        cfg = lab.readonly_config
        if lab.flux is not None:
            lab.flux.settle(timeout=max(args.timeout, 30))
    try:
        snapshot = asyncio.run(_collect(cfg, args.timeout))
    finally:
        if lab is not None:
            lab.stop()
    if args.json:
        # indented for a person at a terminal; compact for a pipe, where the C encoder
        # (which cannot indent) writes it several times faster
        indent = 2 if sys.stdout.isatty() else None
        print(json.dumps(snapshot_to_json(snapshot), indent=indent))
    else:
        print(render_text(snapshot))
    return 0 if snapshot.healthy else 1
