"""The lab at 7, 100, 300 and 500 nodes: start, first Flux pass, one full snapshot, memory.

    python bench/scale.py [--nodes 7,100,300,500] [--pods-per-node 40] [--runs 5]
    python bench/scale.py --lab-dir DIR [--runs 5]    # a `dapper-tui lab --dir DIR` running

For each size, in this process: lab start time, the Flux twin's first pass (with
3 synthetic apps per node above 7), one full Collector snapshot cold (a fresh collector)
and warm (median of --runs refreshes, Kubernetes from its watch cache as in the
console), the process's RSS after it, and
`kubectl get nodes -o json` (median) for comparison when kubectl is on PATH. With
--lab-dir the snapshots are taken from a lab running in its own process, as the console
sees one (the lab's own work then does not share this process's interpreter).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from dapper.backends.snapshot.collector import Collector
from dapper.lab.runtime import find_repo, start_lab


def rss_mib() -> float:
    """Current resident set size (not the peak), from /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f} ms"


async def snapshots(config, runs: int) -> tuple[float, list[float], int, int, list[str]]:
    fresh = Collector(config, timeout=60)
    t = time.perf_counter()
    snap = await fresh.refresh_all()
    cold = time.perf_counter() - t
    # warm as the console runs: Kubernetes from its watch cache, the others on their
    # budgets and caches
    await asyncio.to_thread(fresh.start_watches)
    for _ in range(600):
        if fresh.watching("kubernetes"):
            break
        await asyncio.sleep(0.1)
    warm: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        snap = await fresh.refresh_all()
        warm.append(time.perf_counter() - t)
    await fresh.close()
    gpus = sum(1 for g in snap.gpus if g.node_name)
    bad = [s.source for s in snap.sources if not s.ok]
    return cold, warm, len(snap.nodes), gpus, bad


def kubectl_nodes(kubeconfig: Path, runs: int) -> float | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
            check=True,
            capture_output=True,
        )
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def one_size(nodes: int, runs: int, repo: Path | None, pods_per_node: int) -> None:
    gc.collect()
    t = time.perf_counter()
    pods = nodes * pods_per_node if nodes > 7 and pods_per_node else None
    lab = start_lab(repo=repo, nodes=nodes, pods=pods)
    started = time.perf_counter() - t
    try:
        apps = lab.flux.scale_apps if lab.flux is not None else 0
        flux = 0.0
        if lab.flux is not None:
            t = time.perf_counter()
            lab.flux.reconcile_now(timeout=600)  # waits for a pass begun now: the first full one
            flux = time.perf_counter() - t
        cold, warm, seen, gpus, bad = asyncio.run(snapshots(lab.config, runs))
        rss = rss_mib()
        kubectl = kubectl_nodes(lab.files.kubeconfig, runs)
        print(f"-- {nodes} nodes: {len(lab.world.pods())} pods, {apps} synthetic apps")
        print(f"   lab start          {ms(started)}")
        print(
            f"   first Flux pass    {ms(flux)}  (reconcile_now from start; error: "
            f"{(lab.flux.last_error if lab.flux else '') or 'none'})"
        )
        print(f"   snapshot cold      {ms(cold)}")
        print(f"   snapshot warm      {ms(statistics.median(warm))}  (median of {runs})")
        print(f"   snapshot content   {seen} nodes, {gpus} GPUs joined, degraded: {bad or 'none'}")
        print(f"   RSS                {rss:8.0f} MiB")
        if kubectl is None:
            print("   kubectl            not on PATH")
        else:
            print(f"   kubectl get nodes  {ms(kubectl)}  (median of {runs})")
    finally:
        t = time.perf_counter()
        lab.stop()
        print(f"   lab stop           {ms(time.perf_counter() - t)}")


def running_lab(lab_dir: Path, runs: int) -> None:
    from dapper.backends.config import load_config

    config = load_config(lab_dir / "config-readonly.toml", read_only=True)
    cold, warm, seen, gpus, bad = asyncio.run(snapshots(config, runs))
    kubectl = kubectl_nodes(lab_dir / "kubeconfig", runs)
    print(f"-- the lab in {lab_dir} (its own process): {seen} nodes, {gpus} GPUs joined")
    print(f"   snapshot cold      {ms(cold)}")
    print(f"   snapshot warm      {ms(statistics.median(warm))}  (median of {runs})")
    print(f"   degraded           {bad or 'none'}")
    print(f"   RSS                {rss_mib():8.0f} MiB")
    if kubectl is not None:
        print(f"   kubectl get nodes  {ms(kubectl)}  (median of {runs})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="7,100,300,500")
    parser.add_argument(
        "--pods-per-node",
        type=int,
        default=40,
        help="--pods for labs above 7 nodes: nodes x this (500 nodes: 20,000); 0: one each",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lab-dir", type=Path, help="a running `dapper-tui lab --dir`")
    args = parser.parse_args()
    if args.lab_dir is not None:
        running_lab(args.lab_dir, args.runs)
        return 0
    repo = find_repo(Path(__file__).parent)
    for n in (int(x) for x in args.nodes.split(",")):
        one_size(n, args.runs, repo, args.pods_per_node)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
