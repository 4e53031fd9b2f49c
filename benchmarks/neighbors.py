"""Time itnet_geo's pure neighbour search against torch-cluster and PyG's own.

Every peer runs in this process on the same random clouds (uniform in the unit
cube). A peer that cannot run here (torch-cluster not installed, PyG without
pyg-lib / torch-cluster) is reported as ``unavailable`` with its error.

    python benchmarks/neighbors.py            # full run, writes results/
    python benchmarks/neighbors.py --quick    # small sizes only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from itnet_geo.ops import neighbors
from itnet_geo.typing import WITH_TORCH_CLUSTER

TARGET_SECONDS = 2.0  # knn_graph, 100k points, k=16, pure path


def _timed(repeat, fn, *args):
    fn(*args)  # warm-up (imports, allocator)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def _workloads(quick):
    """(name, number of clouds, points per cloud)."""
    sizes = [("1k", 1, 1_000), ("10k", 1, 10_000), ("batch 32x1024", 32, 1_024)]
    if not quick:
        sizes.append(("100k", 1, 100_000))
    return sizes


def _radius_for(points_per_cloud, neighbours=16):
    """Radius whose ball holds about ``neighbours`` points of a unit-cube cloud."""
    return (3 * neighbours / (4 * torch.pi * points_per_cloud)) ** (1 / 3)


def _ops(clouds, n, quick):
    r = _radius_for(n)
    ops = {
        "knn_graph(k=16)": lambda f, x, b: f.knn_graph(x, 16, b),
        f"radius_graph(r={r:.3f}, max=32)": lambda f, x, b: f.radius_graph(
            x, r, b, max_num_neighbors=32
        ),
    }
    if n * n * 0.25 <= (1e8 if quick else 3e9) and clouds * n <= 40_000:
        ops["fps(ratio=0.25)"] = lambda f, x, b: f.fps(x, b, 0.25, random_start=False)
    return ops


class _Peer:
    """The same five functions, bound to one implementation."""

    def __init__(self, name, knn_graph, radius_graph, fps):
        self.name = name
        self.knn_graph, self.radius_graph, self.fps = knn_graph, radius_graph, fps


def _peers():
    peers = {
        "pure": _Peer(
            "pure",
            lambda x, k, b: neighbors.knn_graph(x, k, b, backend="pure"),
            lambda x, r, b, max_num_neighbors: neighbors.radius_graph(
                x, r, b, max_num_neighbors=max_num_neighbors, backend="pure"
            ),
            lambda x, b, ratio, random_start: neighbors.fps(
                x, b, ratio, random_start, backend="pure"
            ),
        )
    }
    workers = torch.get_num_threads()
    if WITH_TORCH_CLUSTER:
        import torch_cluster

        peers["torch_cluster"] = _Peer(
            "torch_cluster",
            lambda x, k, b: torch_cluster.knn_graph(x, k, b, num_workers=workers),
            lambda x, r, b, max_num_neighbors: torch_cluster.radius_graph(
                x, r, b, max_num_neighbors=max_num_neighbors, num_workers=workers
            ),
            lambda x, b, ratio, random_start: torch_cluster.fps(
                x, b, ratio, random_start
            ),
        )
    import torch_geometric.nn as pyg_nn

    peers["pyg"] = _Peer(
        "pyg",
        lambda x, k, b: pyg_nn.knn_graph(x, k, b, num_workers=workers),
        lambda x, r, b, max_num_neighbors: pyg_nn.radius_graph(
            x, r, b, max_num_neighbors=max_num_neighbors, num_workers=workers
        ),
        lambda x, b, ratio, random_start: pyg_nn.fps(x, b, ratio, random_start),
    )
    return peers


def _size(out):
    return int(out.size(-1))


def run(quick, repeat):
    peers = _peers()
    rows = []
    for label, clouds, n in _workloads(quick):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(clouds * n, 3, generator=gen)
        batch = None if clouds == 1 else torch.arange(clouds).repeat_interleave(n)
        for op, call in _ops(clouds, n, quick).items():
            row = {"workload": label, "points": clouds * n, "op": op, "peers": {}}
            for name, peer in peers.items():
                try:
                    best, median, out = _timed(repeat, call, peer, x, batch)
                except Exception as error:  # noqa: BLE001 - report, do not stop
                    row["peers"][name] = {
                        "status": "unavailable",
                        "error": f"{type(error).__name__}: {error}".splitlines()[0],
                    }
                    continue
                row["peers"][name] = {
                    "status": "ok",
                    "best_s": best,
                    "median_s": median,
                    "output_size": _size(out),
                }
            base = row["peers"]["pure"]
            for name, result in row["peers"].items():
                if result["status"] == "ok" and name != "pure":
                    result["pure_over_peer"] = base["best_s"] / result["best_s"]
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(row):
    parts = [f"{row['workload']:>14} {row['op']:<32}"]
    for name, result in row["peers"].items():
        if result["status"] != "ok":
            parts.append(f"{name}: unavailable")
            continue
        text = f"{name}: {result['best_s'] * 1e3:9.1f} ms"
        if "pure_over_peer" in result:
            text += f" (pure/{name} {result['pure_over_peer']:.2f}x)"
        parts.append(text)
    print(" | ".join(parts), flush=True)


def _target(rows):
    for row in rows:
        if row["workload"] == "100k" and row["op"].startswith("knn_graph"):
            seconds = row["peers"]["pure"]["best_s"]
            return {
                "what": "knn_graph, 100k random points, k=16, pure path",
                "seconds": seconds,
                "limit_s": TARGET_SECONDS,
                "met": seconds < TARGET_SECONDS,
            }
    return None


def _markdown(meta, rows, target):
    names = list(rows[0]["peers"]) if rows else []
    lines = [
        "# Neighbour search: pure path vs torch-cluster vs PyG",
        "",
        f"{meta['machine']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"best of {meta['repeat']} runs, 1-min load average "
        f"{meta['load_average_before']:.1f} before the run (the machine is "
        "shared). Ratio = pure time / peer time (below 1: pure is faster).",
        "",
        "| workload | op | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"pure/{n}" for n in names if n != "pure")
        + " |",
        "|---" * (2 + len(names) + len(names) - 1) + "|",
    ]
    for row in rows:
        cells = [row["workload"], f"`{row['op']}`"]
        for name in names:
            result = row["peers"][name]
            cells.append(
                f"{result['best_s'] * 1e3:.1f} ms"
                if result["status"] == "ok"
                else "unavailable"
            )
        for name in names:
            if name == "pure":
                continue
            ratio = row["peers"][name].get("pure_over_peer")
            cells.append("–" if ratio is None else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    errors = sorted(
        {
            (name, result["error"])
            for row in rows
            for name, result in row["peers"].items()
            if result["status"] != "ok"
        }
    )
    if errors:
        lines += ["", "Unavailable peers:", ""]
        lines += [f"- {name}: `{error}`" for name, error in errors]
    if target is not None:
        verdict = "met" if target["met"] else "NOT met"
        lines += [
            "",
            f"Target: {target['what']} under {target['limit_s']:.0f} s: "
            f"{target['seconds']:.2f} s ({verdict}).",
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the 100k cloud")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per cell")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where neighbors.json and neighbors.md go",
    )
    args = parser.parse_args()

    meta = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "with_torch_cluster": WITH_TORCH_CLUSTER,
        "repeat": args.repeat,
        "load_average_before": os.getloadavg()[0],
    }
    rows = run(args.quick, args.repeat)
    target = _target(rows)
    if target is not None:
        print(
            f"target: {target['what']}: {target['seconds']:.2f} s "
            f"(< {target['limit_s']} s: {target['met']})"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "target": target, "results": rows}
    (args.out_dir / "neighbors.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out_dir / "neighbors.md").write_text(_markdown(meta, rows, target))


if __name__ == "__main__":
    main()
