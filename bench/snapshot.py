"""Time one full joined snapshot against `kubectl get nodes -o json`, on the same lab.

    python bench/snapshot.py [--nodes N] [--runs R]

Prints medians and the ratio (goal at the default size: at most 1.5, although the
snapshot asks three APIs and parses the tree). The snapshot is measured warm (a
running console's refresh) and cold (a fresh collector: the first refresh of `status`).
The Kubernetes refresh alone is measured twice: by list calls (`status`, or a console
whose watches are down) and from the watch cache (a console with healthy watches).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import find_repo, start_lab


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=7)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    lab = start_lab(repo=find_repo(Path(__file__).parent), nodes=args.nodes)
    try:
        if lab.flux is not None:
            lab.flux.reconcile_now(timeout=120)

        async def measure() -> tuple[list[float], list[float], int]:
            warm: list[float] = []
            cold: list[float] = []
            collector = Collector(lab.config, timeout=30)
            await collector.refresh_all()
            for _ in range(args.runs):
                t = time.perf_counter()
                snap = await collector.refresh_all()
                warm.append(time.perf_counter() - t)
            await collector.close()
            for _ in range(max(3, args.runs // 3)):
                fresh = Collector(lab.config, timeout=30)
                t = time.perf_counter()
                await fresh.refresh_all()
                cold.append(time.perf_counter() - t)
                await fresh.close()
            bad = [s.source for s in snap.sources if not s.ok]
            assert not bad, f"degraded sources during the benchmark: {bad}"
            return warm, cold, len(snap.nodes)

        async def kube_refresh(watched: bool) -> list[float]:
            collector = Collector(lab.config, timeout=30)
            try:
                if watched:
                    collector.start_watches()
                    deadline = time.monotonic() + 60
                    while not collector.watching("kubernetes"):
                        assert time.monotonic() < deadline, collector.watcher.reason
                        await asyncio.sleep(0.05)
                await collector.refresh("kubernetes")
                samples = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    snap = await collector.refresh("kubernetes")
                    samples.append(time.perf_counter() - t)
                assert snap.source("kubernetes").ok, snap.source("kubernetes").reason
                assert collector.watching("kubernetes") == watched
                return samples
            finally:
                await collector.close()

        warm, cold, nodes = asyncio.run(measure())
        listed = asyncio.run(kube_refresh(False))
        watched = asyncio.run(kube_refresh(True))
        print(f"lab: {nodes} nodes, {len(lab.world.pods())} pods")
        print(f"snapshot warm   median {median_ms(warm):8.1f} ms  (n={len(warm)})")
        print(f"snapshot cold   median {median_ms(cold):8.1f} ms  (n={len(cold)})")
        print(
            f"refresh kubernetes  lists {median_ms(listed):8.1f} ms   watch cache "
            f"{median_ms(watched):8.1f} ms  (medians, n={len(listed)})"
        )
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            print("kubectl not on PATH: no comparison")
            return 0
        runs: list[float] = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(
                [kubectl, "--kubeconfig", str(lab.files.kubeconfig), "get", "nodes", "-o", "json"],
                check=True,
                capture_output=True,
            )
            runs.append(time.perf_counter() - t)
        k = median_ms(runs)
        print(f"kubectl get nodes -o json  median {k:8.1f} ms  (n={len(runs)})")
        print(
            f"ratio warm/kubectl {median_ms(warm) / k:5.2f}   cold/kubectl "
            f"{median_ms(cold) / k:5.2f}   (goal <= 1.5)"
        )
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
