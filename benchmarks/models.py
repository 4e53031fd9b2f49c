"""Training and inference throughput of ITNetClassifier against PointNet++ and DGCNN.

All models run in this process, on the same mini-batches (real ModelNet40 train
shapes read from ``../shared/data`` when present, else random clouds), round by
round: every round times one step of each model in turn, so that load from other
processes falls on all of them alike. A training step is forward + cross-entropy
+ backward + Adam step; inference is a forward pass in eval mode without
gradients. The peers follow PyG's examples:

* ``pointnet2``: ``examples/pointnet2_classification.py`` (PointNet++ SSG:
  ``PointNetConv`` set abstraction with ratios 0.5 / 0.25, radii 0.2 / 0.4, at
  most 64 neighbours, a global set abstraction, MLP head with dropout 0.5);
* ``dgcnn``: ``examples/dgcnn_classification.py`` (two dynamic ``EdgeConv``
  layers, k = 20, max aggregation);

both with ``itnet_geo.ops`` neighbours (torch-cluster-backed where installed),
from :mod:`itnet_geo.nn.models.baselines`.

    python benchmarks/models.py                      # full run, writes results/
    python benchmarks/models.py --iters 3 --no-write # a short run, printed only
    python benchmarks/models.py --models itnet:default itnet:default+compile
                                                     # eager against torch.compile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from itnet_geo.nn.models import DGCNN, PRESETS, ITNetClassifier, PointNet2SSG
from itnet_geo.ops import set_compile
from itnet_geo.typing import WITH_TORCH_CLUSTER

ROOT = Path(__file__).resolve().parent
DATA = Path(
    os.environ.get("ITNET_GEO_SHARED_DATA", ROOT.parents[1] / "shared" / "data")
)
BASELINE = "pointnet2"
COMPILED = "+compile"


def _compiled(name):
    """``itnet:PRESET+compile``: the preset with the compiled neighbourhood sums."""
    return name.endswith(COMPILED)


def build(name, num_classes):
    name = name.removesuffix(COMPILED)
    if name == "pointnet2":
        return PointNet2SSG(num_classes)
    if name == "dgcnn":
        return DGCNN(num_classes)
    if name.startswith("itnet:"):
        return ITNetClassifier.from_preset(name.split(":", 1)[1], num_classes)
    raise ValueError(f"unknown model {name!r}")


# ------------------------------------------------------------------- data
def load_batches(num_batches, batch_size, num_points, seed):
    """Mini-batches of real ModelNet40 train shapes, or of random clouds."""
    gen = np.random.default_rng(seed)
    root = DATA / "ModelNet40"
    files = sorted(root.glob("*/train/*.npy")) if root.is_dir() else []
    source = f"ModelNet40 train shapes ({root})" if files else "random clouds"
    classes = sorted({f.parts[-3] for f in files}) or [str(i) for i in range(40)]
    batches = []
    for _ in range(num_batches):
        items = []
        for _ in range(batch_size):
            if files:
                path = files[int(gen.integers(len(files)))]
                pts = np.load(path).astype(np.float32)[:, :3]
                pick = gen.choice(len(pts), num_points, replace=len(pts) < num_points)
                pts, label = pts[pick], classes.index(path.parts[-3])
            else:
                pts = gen.standard_normal((num_points, 3)).astype(np.float32)
                pts /= np.linalg.norm(pts, axis=1, keepdims=True)
                label = int(gen.integers(40))
            items.append(Data(pos=torch.from_numpy(pts), y=torch.tensor([label])))
        batches.append(Batch.from_data_list(items))
    return batches, source, len(classes)


def modelnet_split(classes, per_class, val_fraction, seed):
    """ModelNet40 train files: (train, val) lists of (path, label), per class."""
    root = DATA / "ModelNet40"
    names = sorted(p.name for p in root.iterdir() if p.is_dir())[:classes]
    gen = np.random.default_rng(seed)
    train, val = [], []
    for label, name in enumerate(names):
        files = sorted((root / name / "train").glob("*.npy"))
        files = [files[i] for i in gen.permutation(len(files))]
        n_val = max(1, round(val_fraction * len(files)))
        val += [(f, label) for f in files[:n_val]]
        train += [(f, label) for f in files[n_val:][:per_class]]
    return train, val, names


def _stack(items, num_points):
    pos = np.stack([np.load(f).astype(np.float32)[:num_points, :3] for f, _ in items])
    return torch.from_numpy(pos), torch.tensor([label for _, label in items])


def _batch_of(pos, labels):
    b, n = pos.shape[:2]
    return Batch(
        pos=pos.reshape(b * n, 3),
        batch=torch.arange(b).repeat_interleave(n),
        y=labels,
        ptr=torch.arange(b + 1) * n,
    )


def sanity_train(model, args, log):
    """Train on a ModelNet40 subset for a CPU-time budget; the loss must fall."""
    train, val, names = modelnet_split(
        args.sanity_classes, args.sanity_per_class, 0.1, args.seed
    )
    train_pos, train_y = _stack(train, args.num_points)
    val_pos, val_y = _stack(val, args.num_points)
    opt = torch.optim.Adam(model.parameters(), lr=args.sanity_lr)
    gen = torch.Generator().manual_seed(args.seed)
    bs = args.batch_size
    curve, step, seen = [], 0, 0
    ema = None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < args.sanity_seconds:
        perm = torch.randperm(len(train_y), generator=gen)
        for start in range(0, len(perm) - bs + 1, bs):
            used = time.process_time() - cpu0
            if used >= args.sanity_seconds:
                break
            for group in opt.param_groups:  # cosine over the CPU-time budget
                group["lr"] = (
                    args.sanity_lr
                    * 0.5
                    * (1 + math.cos(math.pi * used / args.sanity_seconds))
                )
            idx = perm[start : start + bs]
            pos = train_pos[idx]
            scale = torch.empty(bs, 1, 3).uniform_(2 / 3, 3 / 2, generator=gen)
            shift = torch.empty(bs, 1, 3).uniform_(-0.2, 0.2, generator=gen)
            pos = pos[:, torch.randperm(pos.size(1), generator=gen)] * scale + shift
            model.train()
            opt.zero_grad(set_to_none=True)
            logits = model(_batch_of(pos, train_y[idx]))
            loss = F.cross_entropy(logits, train_y[idx])
            loss.backward()
            opt.step()
            step += 1
            seen += bs
            acc = float((logits.argmax(-1) == train_y[idx]).float().mean())
            ema = (
                (loss.item(), acc)
                if ema is None
                else (0.9 * ema[0] + 0.1 * loss.item(), 0.9 * ema[1] + 0.1 * acc)
            )
            if step == 1 or step % args.sanity_log_every == 0:
                row = {
                    "step": step,
                    "clouds": seen,
                    "cpu_s": round(time.process_time() - cpu0, 1),
                    "wall_s": round(time.perf_counter() - wall0, 1),
                    "loss": round(loss.item(), 4),
                    "loss_ema": round(ema[0], 4),
                    "train_acc_ema": round(ema[1], 4),
                }
                curve.append(row)
                log(json.dumps(row))
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(val_y), 64):
            pos = val_pos[start : start + 64]
            pred = model(_batch_of(pos, val_y[start : start + 64])).argmax(-1)
            correct += int((pred == val_y[start : start + 64]).sum())
    result = {
        "classes": len(names),
        "train_shapes": len(train_y),
        "val_shapes": len(val_y),
        "steps": step,
        "clouds": seen,
        "cpu_s": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "val_accuracy": correct / max(len(val_y), 1),
        "curve": curve,
    }
    log(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    return result


# ----------------------------------------------------------------- timing
def _clock():
    return time.perf_counter(), time.process_time()


def train_step(model, opt, data):
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(data), data.y)
    loss.backward()
    opt.step()
    return loss.item()


@torch.no_grad()
def infer_step(model, data):
    model.eval()
    return model(data)


def run(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    batches, source, num_classes = load_batches(
        args.batches, args.batch_size, args.num_points, args.seed
    )
    models, opts = {}, {}
    for name in args.models:
        torch.manual_seed(args.seed)
        models[name] = build(name, num_classes)
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3)
    times = {
        n: {"train": [], "train_cpu": [], "infer": [], "infer_cpu": []} for n in models
    }
    load_before = os.getloadavg()
    for name, model in models.items():  # warm-up (allocator, first-call costs)
        set_compile(_compiled(name))
        for _ in range(args.warmup):
            train_step(model, opts[name], batches[0])
            infer_step(model, batches[0])
    for it in range(args.iters):
        data = batches[it % len(batches)]
        for name, model in models.items():
            set_compile(_compiled(name))
            w0, c0 = _clock()
            train_step(model, opts[name], data)
            w1, c1 = _clock()
            infer_step(model, data)
            w2, c2 = _clock()
            times[name]["train"].append(w1 - w0)
            times[name]["train_cpu"].append(c1 - c0)
            times[name]["infer"].append(w2 - w1)
            times[name]["infer_cpu"].append(c2 - c1)
        print(f"round {it + 1}/{args.iters} done", flush=True)
    load_after = os.getloadavg()

    bs = args.batch_size
    rows = {}
    for name, t in times.items():
        med = {key: statistics.median(vals) for key, vals in t.items()}
        rows[name] = {
            "params": sum(p.numel() for p in models[name].parameters()),
            "train_step_s": med["train"],
            "train_clouds_per_s": bs / med["train"],
            "train_clouds_per_cpu_s": bs / med["train_cpu"],
            "infer_step_s": med["infer"],
            "infer_clouds_per_s": bs / med["infer"],
            "infer_clouds_per_cpu_s": bs / med["infer_cpu"],
            "train_step_s_all": t["train"],
            "infer_step_s_all": t["infer"],
        }
    if BASELINE in rows:
        base = rows[BASELINE]
        for row in rows.values():
            for key in (
                "train_clouds_per_s",
                "train_clouds_per_cpu_s",
                "infer_clouds_per_s",
                "infer_clouds_per_cpu_s",
            ):
                row[f"{key}_vs_{BASELINE}"] = row[key] / base[key]
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "torch_cluster": WITH_TORCH_CLUSTER,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "setup": {
            "data": source,
            "batch_size": bs,
            "num_points": args.num_points,
            "iters": args.iters,
            "warmup": args.warmup,
            "optimizer": "Adam(lr=1e-3)",
            "presets": {
                n: PRESETS[n.split(":", 1)[1].removesuffix(COMPILED)]
                for n in models
                if n.startswith("itnet:")
            },
        },
        "results": {n: r for n, r in rows.items()},
    }


def markdown(report):
    lines = _throughput_markdown(report) if report["results"] else []
    sanity = report.get("sanity")
    if sanity:
        first, last = sanity["curve"][0], sanity["curve"][-1]
        lines += [
            "## Sanity training",
            "",
            f"`{sanity['model']}` on {sanity['classes']} ModelNet40 classes "
            f"({sanity['train_shapes']} train shapes, {sanity['val_shapes']} "
            f"held out, 10% per class), batch {sanity['batch_size']}, "
            f"Adam lr {sanity['lr']} with a cosine decay over the CPU-time budget, "
            f"scale/shift augmentation, {sanity['threads']} thread(s), on the shared "
            "machine.",
            "",
            "| step | clouds | CPU s | wall s | loss (EMA) | train acc (EMA) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        rows = sanity["curve"][:: max(1, len(sanity["curve"]) // 12)]
        for row in rows + ([last] if rows[-1] is not last else []):
            lines.append(
                f"| {row['step']} | {row['clouds']} | {row['cpu_s']} | "
                f"{row['wall_s']} | {row['loss_ema']:.3f} | "
                f"{row['train_acc_ema']:.3f} |"
            )
        lines += [
            "",
            f"Loss {first['loss']:.3f} -> {last['loss_ema']:.3f} (EMA); "
            f"held-out accuracy after {sanity['clouds']} clouds "
            f"({sanity['cpu_s']} CPU s, {sanity['wall_s']} s wall): "
            f"**{sanity['val_accuracy']:.3f}**.",
            "",
        ]
    lines += [
        "Command: `python benchmarks/models.py " + " ".join(report["argv"]) + "`",
        "",
    ]
    return "\n".join(lines)


def _load_remark(load_before, threads):
    """How to read the timings given the load before the run started."""
    if load_before < 0.5:
        return ": the machine was idle before the run."
    return (
        f": other processes shared the cores (load {load_before:.1f} with "
        f"{threads} thread(s) of ours), so absolute numbers are low; the ratios "
        "(same rounds) are the comparison."
    )


def _throughput_markdown(report):
    m, s = report["machine"], report["setup"]
    lines = [
        "# Model throughput",
        "",
        f"Batch {s['batch_size']} x {s['num_points']} points, {s['data']}; "
        f"median of {s['iters']} rounds (each round times every model once, in "
        f"turn). torch {m['torch']}, {m['torch_threads']} threads, "
        f"torch-cluster {'installed' if m['torch_cluster'] else 'not installed'}, "
        f"{m['cpu_count']} cores ({m['processor']}).",
        "",
        "Load average (1/5/15 min) before {:.1f}/{:.1f}/{:.1f}, after "
        "{:.1f}/{:.1f}/{:.1f}{}".format(
            *m["load_average_before"],
            *m["load_average_after"],
            _load_remark(m["load_average_before"][0], m["torch_threads"]),
        ),
        "",
        *([report["note"], ""] if report.get("note") else []),
        "| model | params | train clouds/s | train clouds/CPU-s | vs PointNet++ "
        "| infer clouds/s | infer clouds/CPU-s | vs PointNet++ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        ratio_t = r.get(f"train_clouds_per_cpu_s_vs_{BASELINE}")
        ratio_i = r.get(f"infer_clouds_per_cpu_s_vs_{BASELINE}")
        lines.append(
            f"| {name} | {r['params']:,} | {r['train_clouds_per_s']:.1f} | "
            f"{r['train_clouds_per_cpu_s']:.1f} | "
            f"{'-' if ratio_t is None else f'{ratio_t:.1f}x'} | "
            f"{r['infer_clouds_per_s']:.1f} | {r['infer_clouds_per_cpu_s']:.1f} | "
            f"{'-' if ratio_i is None else f'{ratio_i:.1f}x'} |"
        )
    lines += [
        "",
        "Ratios use clouds per CPU-second (process CPU time), which contention "
        "from other processes distorts less than wall time.",
        "",
    ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["itnet:cpu-1h", "itnet:default", "itnet:large", "pointnet2", "dgcnn"],
    )
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--batches", type=int, default=4, help="distinct mini-batches, cycled"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results")
    parser.add_argument(
        "--no-write", action="store_true", help="print only, write no results"
    )
    parser.add_argument(
        "--sanity-seconds",
        type=float,
        default=0.0,
        help="CPU seconds of sanity training after the timing "
        "(0: none); needs ModelNet40 in ../shared/data",
    )
    parser.add_argument("--sanity-model", default="itnet:cpu-1h")
    parser.add_argument("--sanity-classes", type=int, default=40)
    parser.add_argument(
        "--sanity-per-class",
        type=int,
        default=50,
        help="train shapes per class (10%% per class held out)",
    )
    parser.add_argument("--sanity-lr", type=float, default=1e-3)
    parser.add_argument("--sanity-log-every", type=int, default=10)
    parser.add_argument(
        "--note", default="", help="a remark on the run for the Markdown report"
    )
    args = parser.parse_args(argv)
    report = run(args) if args.iters > 0 else {"results": {}}
    report["note"] = args.note
    report["argv"] = list(argv) if argv is not None else sys.argv[1:]
    if args.sanity_seconds > 0:
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        model = build(args.sanity_model, args.sanity_classes)
        set_compile(_compiled(args.sanity_model))
        report["sanity"] = {
            "model": args.sanity_model,
            "threads": args.threads,
            "lr": args.sanity_lr,
            "batch_size": args.batch_size,
            **sanity_train(model, args, lambda line: print(line, flush=True)),
        }
    text = markdown(report)
    print(text)
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "models.json").write_text(json.dumps(report, indent=2))
        (args.out_dir / "models.md").write_text(text)


if __name__ == "__main__":
    main()
