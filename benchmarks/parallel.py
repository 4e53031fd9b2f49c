"""Threads or processes: training throughput of one model on all the cores.

A small CPU can train one model with one process and several torch threads, or
with several 1-thread processes under DDP (``itnet-geo train --nproc N``), the
batch split between them. This script measures both on the same real ModelNet40
batches (batch 32 per step in total, 1024 points), forward + cross-entropy +
backward + Adam step, with gradients all-reduced over gloo in the DDP case:

* ``1 process x T threads`` for T = 1 .. cores;
* ``P processes x 1 thread`` (DDP, batch 32 / P each) for P = 2 .. cores.

Each configuration runs alone, one after the other; the figure is the median
step time (the slowest rank's, for DDP) turned into clouds per second.

    python benchmarks/parallel.py                         # ITNet cpu-1h and PointNet++
    python benchmarks/parallel.py --models itnet:cpu-1h --steps 5 --no-write
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from _common import environment, write_results
from models import build, load_batches
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.data import Batch


def _split(batch: Batch, parts: int, rank: int) -> Batch:
    items = batch.to_data_list()
    share = len(items) // parts
    return Batch.from_data_list(items[rank * share : (rank + 1) * share])


def _steps(model, opt, batches, steps, warmup, label=None) -> list[float]:
    """Time ``steps`` training steps after ``warmup`` untimed ones; with a
    ``label``, print each step's time (slow rows then show progress)."""
    times = []
    for i in range(warmup + steps):
        data = batches[i % len(batches)]
        start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(data), data.y).backward()
        opt.step()
        took = time.perf_counter() - start
        if i >= warmup:
            times.append(took)
        if label is not None:
            kind = "warm-up" if i < warmup else "step"
            line = f"  {label}: {kind} {i + 1}/{warmup + steps}: {took:.2f} s"
            print(line, flush=True)
    return times


def _worker(rank, world, name, args, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    batches, _, num_classes = load_batches(
        args.batches, args.batch_size, args.num_points, args.seed
    )
    batches = [_split(b, world, rank) for b in batches]
    torch.manual_seed(args.seed)
    model = DistributedDataParallel(build(name, num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    label = f"{name} DDP rank 0/{world}" if rank == 0 else None
    times = _steps(model, opt, batches, args.steps, args.warmup, label)
    gathered = [None] * world
    dist.all_gather_object(gathered, times)
    if rank == 0:
        slowest = [max(step) for step in zip(*gathered, strict=True)]
        torch.save(slowest, Path(out_dir) / "times.pt")
    dist.destroy_process_group()


def threaded(name, threads, args) -> float:
    torch.set_num_threads(threads)
    batches, _, num_classes = load_batches(
        args.batches, args.batch_size, args.num_points, args.seed
    )
    torch.manual_seed(args.seed)
    model = build(name, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    label = f"{name} {threads} thread(s)"
    return statistics.median(
        _steps(model, opt, batches, args.steps, args.warmup, label)
    )


def distributed(name, processes, args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            _worker,
            args=(processes, name, args, os.path.join(tmp, "init"), tmp),
            nprocs=processes,
            join=True,
        )
        return statistics.median(torch.load(Path(tmp) / "times.pt"))


def markdown(report) -> str:
    lines = [
        f"Training throughput, batch {report['batch_size']} per step in total x "
        f"{report['num_points']} points (real ModelNet40 shapes), median of "
        f"{report['steps']} steps; {report['machine']}.",
        "",
        "| model | configuration | s per step | clouds/s | vs 1 process x 1 thread |",
        "|---|---|---:|---:|---:|",
    ]
    for name, rows in report["models"].items():
        base = rows[0]["step_s"]
        for row in rows:
            lines.append(
                f"| {name} | {row['config']} | {row['step_s']:.3f} | "
                f"{report['batch_size'] / row['step_s']:.1f} | "
                f"{base / row['step_s']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["itnet:cpu-1h", "pointnet2"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-points", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    report = {
        "benchmark": "parallel",
        "batch_size": args.batch_size,
        "num_points": args.num_points,
        "steps": args.steps,
        **environment(),
        "models": {},
    }
    for name in args.models:
        rows = []
        for threads in range(1, cores + 1):
            step = threaded(name, threads, args)
            rows.append({"config": f"1 process x {threads} thread(s)", "step_s": step})
            print(f"{name}: {rows[-1]['config']}: {step:.3f} s/step", flush=True)
        for processes in range(2, cores + 1):
            if args.batch_size % processes:
                continue
            step = distributed(name, processes, args)
            config = f"{processes} processes x 1 thread (DDP)"
            rows.append({"config": config, "step_s": step})
            print(f"{name}: {config}: {step:.3f} s/step", flush=True)
        report["models"][name] = rows
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_results("parallel", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
