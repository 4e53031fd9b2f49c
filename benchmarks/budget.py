"""Accuracy per CPU-hour: ITNet's cpu-1h preset against PointNet++ SSG, same budget.

Trains, one after the other on the same machine, the same data (ModelNet40 train
split, 1024 xyz points, the same validation split carved from it with a fixed
seed) and the same wall-clock budget:

* ``itnet``: ``itnet-geo train --preset cpu-1h`` (ITNetClassifier, warm-up +
  cosine over the budget, AdamW);
* ``itnet_2proc`` (on request): the same, as two one-thread DDP processes
  (``--nproc 2``), which train 1.6x as fast as one two-thread process
  on two cores (``benchmarks/parallel.py``);
* ``itnet_compiled``, ``itnet_2proc_compiled`` (on request): the two above with
  their neighbourhood sums compiled (``--compile``);
* ``pointnet2_ssg``: ``itnet-geo train --model pointnet2_ssg``, the architecture
  of PyG's ``examples/pointnet2_classification.py`` trained as that example
  does (Adam, lr 1e-3, batch 32, no label smoothing), with scale / shift
  augmentation and the same time-budgeted warm-up + cosine schedule.

Each leg is a separate ``itnet-geo train`` process (the exact commands are
printed and stored), so its budget counts everything from start-up and data
loading to the final evaluation. Reports validation accuracy (overall and mean
class) of each run's best checkpoint, training throughput (clouds/s, from the
run's own epoch timings), the ratios, and a plot of validation accuracy against
wall time.

A leg that finished is reused; one that was killed continues with ``--resume``
(its budget counts the time already spent), so the benchmark survives a crash
or a session boundary::

    python benchmarks/budget.py --budget 1h --threads 2          # both legs, ~2 h
    python benchmarks/budget.py --budget 1h --legs itnet         # one leg
    python benchmarks/budget.py --legs itnet_2proc itnet pointnet2_ssg
    python benchmarks/budget.py --legs itnet_2proc_compiled
    python benchmarks/budget.py --budget 4m --out /tmp/b --no-write  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import environment, write_results

ROOT = Path(__file__).resolve().parent
DATA = Path(
    os.environ.get("ITNET_GEO_SHARED_DATA", ROOT.parents[1] / "shared" / "data")
)

#: The legs: training options after ``itnet-geo train --dataset modelnet40``.
LEGS: dict[str, list[str]] = {
    "itnet": ["--preset", "cpu-1h"],
    "pointnet2_ssg": [
        "--model",
        "pointnet2_ssg",
        "--optimizer",
        "adamw",
        "--lr",
        "1e-3",
        "--weight-decay",
        "0",
        "--label-smoothing",
        "0",
        "--warmup-epochs",
        "0.2",
        "--augment",
        "scale:0.8:1.25",
        "shift:0.1",
    ],
}
#: Legs that run as ``--nproc N`` one-thread DDP processes (on N cores).
PROCESSES = {"itnet_2proc": 2, "itnet_2proc_compiled": 2}
#: Legs with their neighbourhood sums compiled (``--compile``).
COMPILED = {"itnet_compiled", "itnet_2proc_compiled"}
for _leg in ("itnet_2proc", *COMPILED):
    LEGS[_leg] = LEGS["itnet"]
LABELS = {
    "itnet": "ITNet cpu-1h",
    "itnet_2proc": "ITNet cpu-1h, 2 processes",
    "itnet_compiled": "ITNet cpu-1h, compiled sums",
    "itnet_2proc_compiled": "ITNet cpu-1h, 2 processes, compiled sums",
    "pointnet2_ssg": "PointNet++ SSG (PyG)",
}
BASELINE = "pointnet2_ssg"


def leg_command(leg: str, args: argparse.Namespace, resume: bool) -> list[str]:
    """The ``itnet-geo train`` command of one leg."""
    out = str(Path(args.out) / leg)
    base = [sys.executable, "-m", "itnet_geo.cli", "train", "--out", out]
    common = ["--threads", str(args.threads), "--no-progress"]
    if leg in PROCESSES:  # one thread per process
        common = ["--nproc", str(PROCESSES[leg]), "--threads", "1", "--no-progress"]
    if leg in COMPILED:  # an execution option: given again when resuming
        common.append("--compile")
    if resume:
        return base + ["--resume"] + common
    data = ["--dataset", "modelnet40", "--root", str(args.root)]
    data += ["--num-points", "1024", "--val-fraction", "0.1", "--seed", str(args.seed)]
    return base + data + LEGS[leg] + ["--time-budget", args.budget] + common


def display(command: str) -> str:
    """A stored command as a user types it: ``itnet-geo train ...``."""
    words = shlex.split(command)
    if words[1:3] == ["-m", "itnet_geo.cli"]:
        words = ["itnet-geo", *words[3:]]
    return shlex.join(words)


def epoch_records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def run_leg(leg: str, args: argparse.Namespace) -> dict:
    """Run (or reuse, or resume) one leg; its summary."""
    run = Path(args.out) / leg
    results = run / "results.json"
    if results.is_file() and not args.fresh:
        print(f"[{leg}] finished before: reusing {results}", flush=True)
    else:
        resume = (run / "last.pt").is_file() and not args.fresh
        if args.fresh and run.exists():
            for name in (
                "last.pt",
                "best.pt",
                "results.json",
                "metrics.jsonl",
                "command.txt",
                "stdout.log",
            ):
                (run / name).unlink(missing_ok=True)
        cmd = leg_command(leg, args, resume)
        print(f"[{leg}] {shlex.join(cmd)}", flush=True)
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "command.txt", "a") as f:  # the first line started the leg
            f.write(shlex.join(cmd) + "\n")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        with open(run / "stdout.log", "a") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            tail = (run / "stdout.log").read_text().splitlines()[-15:]
            raise RuntimeError(
                f"leg {leg} failed (exit {proc.returncode}); last lines of "
                f"{run / 'stdout.log'}:\n" + "\n".join(tail)
            )
    summary = json.loads(results.read_text())
    records = epoch_records(run)
    train_time = sum(r["train_time"] for r in records)
    clouds = sum(r["clouds_per_s"] * r["train_time"] for r in records)
    command = display((run / "command.txt").read_text().splitlines()[0])
    return {
        "leg": leg,
        "label": LABELS[leg],
        "command": command,
        "val_accuracy": summary["accuracy"],
        "val_class_accuracy": summary["class_accuracy"],
        "n_val": summary["n"],
        "best_epoch": summary["best_epoch"],
        "epochs": len(records),
        "steps": summary["steps"],
        "elapsed_s": summary["elapsed_s"],
        "budget_s": summary["time_budget_s"],
        "clouds_per_s": clouds / train_time if train_time else float("nan"),
        "curve": [
            {"elapsed": r["elapsed"], "val_acc": r["val_acc"], "epoch": r["epoch"]}
            for r in records
            if r.get("val_acc") is not None
        ],
    }


def parameters(leg: str) -> int:
    from itnet_geo.nn.models import ITNetClassifier, PointNet2SSG

    if leg.startswith("itnet"):
        model = ITNetClassifier.from_preset("cpu-1h", num_classes=40)
    else:
        model = PointNet2SSG(num_classes=40)
    return sum(p.numel() for p in model.parameters())


def markdown(report: dict) -> str:
    legs = report["legs"]
    base = next((r for r in legs if r["leg"] == BASELINE), None)
    lines = [
        f"Budget {report['budget']} per model, {report['threads']} threads, "
        f"{report['machine']}; ModelNet40 train split, 1024 xyz points, "
        f"validation = 10 % per class carved from train (seed {report['seed']}).",
        "",
        "| model | parameters | epochs | validation accuracy | mean class "
        "accuracy | training clouds/s | wall time | accuracy vs PointNet++ | "
        "throughput vs PointNet++ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in legs:
        acc = f"{100 * r['val_accuracy']:.1f} %"
        cls = f"{100 * r['val_class_accuracy']:.1f} %"
        ratio_acc = ratio_tp = "—"
        if base is not None and r is not base:
            gain = 100 * (r["val_accuracy"] - base["val_accuracy"])
            ratio_acc = f"{gain:+.1f} points"
            ratio_tp = f"{r['clouds_per_s'] / base['clouds_per_s']:.1f}×"
        lines.append(
            f"| {r['label']} | {r['parameters'] / 1e6:.2f} M | {r['epochs']} | "
            f"{acc} | {cls} | {r['clouds_per_s']:.1f} | {r['elapsed_s'] / 60:.1f} min"
            f" | {ratio_acc} | {ratio_tp} |"
        )
    lines += ["", "Commands:", ""]
    lines += [f"- {r['label']}: `{r['command']}`" for r in legs]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in report["legs"]:
        xs = [c["elapsed"] / 60 for c in r["curve"]]
        ys = [100 * c["val_acc"] for c in r["curve"]]
        ax.plot(xs, ys, marker="o", label=r["label"])
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"ModelNet40, {report['budget']} budget, {report['threads']} threads")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="1h", help="wall-clock budget per model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=str(DATA / "ModelNet40"))
    p.add_argument(
        "--legs",
        nargs="+",
        default=["itnet", "pointnet2_ssg"],
        choices=list(LEGS),
        metavar="LEG",
        help=f"of {', '.join(LEGS)} (default: itnet pointnet2_ssg)",
    )
    p.add_argument("--out", default="runs/budget", help="run folders (one per leg)")
    p.add_argument("--fresh", action="store_true", help="do not reuse or resume")
    p.add_argument("--no-write", action="store_true", help="leave results/ alone")
    args = p.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"no ModelNet40 train split at {args.root}", file=sys.stderr)
        return 2
    start = time.time()
    legs = []
    for leg in args.legs:
        result = run_leg(leg, args)
        result["parameters"] = parameters(leg)
        legs.append(result)
        print(
            f"[{leg}] validation {100 * result['val_accuracy']:.1f} % "
            f"(class {100 * result['val_class_accuracy']:.1f} %), "
            f"{result['clouds_per_s']:.1f} clouds/s, {result['epochs']} epochs, "
            f"{result['elapsed_s'] / 60:.1f} min",
            flush=True,
        )
    report = {
        "benchmark": "budget",
        "budget": args.budget,
        "threads": args.threads,
        "seed": args.seed,
        **environment(),
        "wall_s": time.time() - start,
        "legs": legs,
    }
    text = markdown(report)
    print(text)
    if not args.no_write:
        plot(report, write_results("budget", report, text) / "budget.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
