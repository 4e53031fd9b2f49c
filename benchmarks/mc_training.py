"""Monte Carlo neighbour subsampling in training: accuracy and time per epoch.

Trains the ``cpu-1h`` ITNetClassifier twice on the same ModelNet40 subset, for
the same epochs, with the same seed, data order and hyper-parameters (the
``cpu-1h`` training preset): once with exact neighbourhood sums
(``mc_ratio=1.0``) and once keeping a random share of each neighbourhood per
step (``mc_ratio=0.5``: :class:`itnet_geo.nn.MonteCarlo`, Horvitz-Thompson
weights, exact sums in evaluation). Both are scored on the same validation
split (10 % per class carved from train, fixed seed).

Reports, per arm: validation accuracy with its binomial standard error,
seconds per training epoch from the runs' own timings, and — robust to load
from other processes — the median time of a training step measured round by
round on the same batches (each round times one step of each arm in turn).

    python benchmarks/mc_training.py                   # writes results/
    python benchmarks/mc_training.py --per-class 8 --epochs 1 --no-write  # smoke
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import environment, write_results

from itnet_geo.nn.models import ITNetClassifier
from itnet_geo.train import (
    TRAIN_PRESETS,
    DataSpec,
    TrainConfig,
    build_augment,
    fit,
    labels_of,
    load_datasets,
    make_optimizer,
    seed_everything,
)

ROOT = Path(__file__).resolve().parent
DATA = Path(
    os.environ.get("ITNET_GEO_SHARED_DATA", ROOT.parents[1] / "shared" / "data")
)


def subset(dataset, per_class: int):
    """The first :obj:`per_class` shapes of each class."""
    labels = labels_of(dataset)
    keep = []
    for c in torch.unique(labels).tolist():
        keep += torch.nonzero(labels == c).view(-1)[:per_class].tolist()
    return dataset.index_select(sorted(keep))


def train_config(epochs: int, seed: int) -> TrainConfig:
    """The cpu-1h training preset for a fixed number of epochs."""
    preset = TRAIN_PRESETS["cpu-1h"]
    options = {k: v for k, v in preset.items() if k in TrainConfig.__dataclass_fields__}
    options.pop("time_budget", None)
    return TrainConfig(**options, epochs=epochs, eval_every=epochs, seed=seed)


def train_arm(ratio, train, val, classes, spec, args, out: Path) -> dict:
    seed_everything(args.seed)
    model = ITNetClassifier.from_preset(
        "cpu-1h", len(classes), num_points=spec.num_points, mc_ratio=ratio
    )
    result = fit(
        model,
        train,
        val,
        train_config(args.epochs, args.seed),
        out,
        classes,
        data=spec.to_dict(),
        progress=not args.no_progress,
        prepare=spec.prepare,
    )
    history = result.history
    final = history[-1]
    acc = final["val_acc"]
    n = len(val)
    return {
        "mc_ratio": ratio,
        "val_accuracy": acc,
        "val_class_accuracy": final["val_class_acc"],
        "stderr": math.sqrt(acc * (1 - acc) / n),
        "n_val": n,
        "epoch_s": [r["train_time"] for r in history],
        "mean_epoch_s": statistics.fmean(r["train_time"] for r in history),
    }


def step_times(ratios, train, spec, args) -> dict:
    """Median training-step time per arm, measured round by round."""
    from torch_geometric.loader import DataLoader

    config = train_config(args.epochs, args.seed)
    augment = build_augment(config.augment)
    models, opts = {}, {}
    for ratio in ratios:
        seed_everything(args.seed)
        models[ratio] = ITNetClassifier.from_preset(
            "cpu-1h", 40, num_points=spec.num_points, mc_ratio=ratio
        ).train()
        opts[ratio] = make_optimizer(models[ratio], config)
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True)
    times = {ratio: [] for ratio in ratios}
    batches = iter(loader)
    for i in range(args.warmup + args.rounds):
        batch = spec.prepare(augment(next(batches)))
        for ratio in ratios:
            start = time.perf_counter()
            opts[ratio].zero_grad()
            loss = F.cross_entropy(models[ratio](batch), batch.y)
            loss.backward()
            opts[ratio].step()
            if i >= args.warmup:
                times[ratio].append(time.perf_counter() - start)
    return {ratio: statistics.median(t) for ratio, t in times.items()}


def markdown(report: dict) -> str:
    exact, mc = report["arms"]
    diff = mc["val_accuracy"] - exact["val_accuracy"]
    se = math.hypot(mc["stderr"], exact["stderr"])
    lines = [
        f"ModelNet40 subset: {report['train_shapes']} train shapes "
        f"({report['per_class']} per class), {report['n_val']} validation shapes; "
        f"`cpu-1h` model and training preset, {report['epochs']} epochs, seed "
        f"{report['seed']}, {report['threads']} thread(s), {report['machine']}.",
        "",
        "| neighbourhood sums in training | validation accuracy | mean class "
        "accuracy | s per epoch | median s per step (round by round) |",
        "|---|---|---|---|---|",
    ]
    for arm in report["arms"]:
        name = (
            "exact (`mc_ratio=1.0`)"
            if arm["mc_ratio"] == 1.0
            else f"Monte Carlo (`mc_ratio={arm['mc_ratio']}`)"
        )
        lines.append(
            f"| {name} | {100 * arm['val_accuracy']:.1f} ± "
            f"{100 * arm['stderr']:.1f} % | {100 * arm['val_class_accuracy']:.1f} % | "
            f"{arm['mean_epoch_s']:.1f} | {arm['step_s']:.3f} |"
        )
    lines += [
        "",
        f"Monte Carlo minus exact: {100 * diff:+.1f} points (standard error "
        f"{100 * se:.1f}); {exact['mean_epoch_s'] / mc['mean_epoch_s']:.2f}× faster "
        f"per epoch, {exact['step_s'] / mc['step_s']:.2f}× per step.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=str(DATA / "ModelNet40"))
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20, help="timed rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds")
    p.add_argument("--out", default=None, help="run folders (default: temporary)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-write", action="store_true", help="leave results/ alone")
    args = p.parse_args(argv)
    if not Path(args.root).is_dir():
        print(f"no ModelNet40 train split at {args.root}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    spec = DataSpec(
        kind="modelnet40", root=args.root, num_points=1024, val_fraction=0.1
    )
    train_full, val, _, classes = load_datasets(spec)
    train = subset(train_full, args.per_class)
    print(f"{len(train)} train / {len(val)} validation shapes", flush=True)
    ratios = [1.0, args.ratio]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        arms = []
        for ratio in ratios:
            arm = train_arm(ratio, train, val, classes, spec, args, out / f"r{ratio}")
            print(
                f"mc_ratio {ratio}: validation {100 * arm['val_accuracy']:.1f} %, "
                f"{arm['mean_epoch_s']:.1f} s per epoch",
                flush=True,
            )
            arms.append(arm)
    steps = step_times(ratios, train, spec, args)
    for arm in arms:
        arm["step_s"] = steps[arm["mc_ratio"]]
    report = {
        "benchmark": "mc_training",
        "per_class": args.per_class,
        "train_shapes": len(train),
        "n_val": len(val),
        "epochs": args.epochs,
        "seed": args.seed,
        "threads": args.threads,
        **environment(),
        "arms": arms,
    }
    text = markdown(report)
    print(text)
    if not args.no_write:
        write_results("mc_training", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
