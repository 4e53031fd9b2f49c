"""ModelNet40 classification (xyz, 1024 points) with ITNetClassifier.

Reads any ModelNet layout (official OFF meshes, ``modelnet40_normal_resampled``,
``ply_hdf5_2048`` or one point file per shape), carves a validation split from
train (10% per class, fixed seed), and trains either for ``--epochs`` or within
``--time-budget`` (the schedule is planned to finish inside it). Tests on the
test split when the root has one.

    python examples/modelnet40_classification.py --root ../shared/data/ModelNet40 \\
        --preset cpu-1h --time-budget 1h
    python examples/modelnet40_classification.py --smoke   # generated stand-in data
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch_geometric.loader import DataLoader

from itnet_geo.datasets import ModelNet, SyntheticShapes
from itnet_geo.nn.models import ITNetClassifier
from itnet_geo.train import (
    DataSpec,
    TrainConfig,
    build_augment,
    carve_split,
    evaluate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    parse_duration,
)
from itnet_geo.transforms import NormalizeUnitSphere

SMOKE_MODEL = dict(
    embed_channels=8,
    channels=[16, 32],
    ratios=[0.5, 0.25],
    k=8,
    depth=0,
    hidden=8,
    heads=4,
    head_channels=[32],
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", default=None, help="ModelNet40 folder")
    parser.add_argument("--out", default="runs/modelnet40")
    parser.add_argument("--cache-dir", default=None, help="processed-data cache")
    parser.add_argument("--num-points", type=int, default=1024)
    parser.add_argument("--preset", default="cpu-1h", help="ITNetClassifier preset")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (default 100, or as many as --time-budget allows)",
    )
    parser.add_argument("--time-budget", default=None, help="e.g. 1h, 30m, 5400s")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--votes", type=int, default=1, help="test-time votes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="generated shapes in the ModelNet layout, tiny model",
    )
    args = parser.parse_args(argv)

    model_options = {}
    if args.smoke:
        args.root = args.root or tempfile.mkdtemp(prefix="modelnet_smoke_")
        SyntheticShapes(
            args.root,
            "train",
            num_per_class=6,
            num_classes=4,
            num_points=128,
            cache_dir=args.cache_dir,
        )
        SyntheticShapes(
            args.root,
            "test",
            num_per_class=2,
            num_classes=4,
            num_points=128,
            cache_dir=args.cache_dir,
        )
        args.num_points, args.epochs, args.batch_size = 128, 1, 8
        args.time_budget = None
        model_options = SMOKE_MODEL
    if args.root is None:
        parser.error("--root is required (or --smoke)")

    def split(name):
        return ModelNet(
            args.root,
            name="40",
            split=name,
            num_points=args.num_points,
            pre_transform=NormalizeUnitSphere(),
            cache_dir=args.cache_dir,
        )

    train_full = split("train")
    try:
        test = split("test")
    except FileNotFoundError:
        test = None  # only the train split here: report validation accuracy
    train, val = carve_split(train_full, fraction=0.1, seed=0)
    spec = DataSpec(kind="modelnet40", root=args.root, num_points=args.num_points)

    torch.manual_seed(args.seed)
    if model_options:
        model = ITNetClassifier(
            train_full.num_classes, num_points=args.num_points, **model_options
        )
    else:
        model = ITNetClassifier.from_preset(
            args.preset, train_full.num_classes, num_points=args.num_points
        )

    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    config = TrainConfig(
        epochs=args.epochs if args.epochs or budget else 100,
        time_budget=budget,
        batch_size=args.batch_size,
        lr=args.lr,
        label_smoothing=0.2,
        augment=("scale",),
        votes=args.votes,
        seed=args.seed,
    )
    final = test if test is not None else val
    result = fit(
        model,
        train,
        val,
        config,
        args.out,
        classes=train_full.classes,
        data=spec.to_dict(),
        final_eval_size=len(final) * args.votes,
    )

    best = model_from_checkpoint(load_checkpoint(result.best_path))
    vote_transform = build_augment(["scale:0.8:1.25"])  # for --votes > 1
    res = evaluate(
        best,
        DataLoader(final, batch_size=64),
        train_full.num_classes,
        votes=args.votes,
        vote_transform=vote_transform,
    )
    name = "test" if test is not None else "validation"
    print(
        f"{name} accuracy {100 * res.accuracy:.2f}% (mean class "
        f"{100 * res.class_accuracy:.2f}%, n={res.n}) after {result.epochs} epochs, "
        f"{result.elapsed:.0f} s"
    )
    return res


if __name__ == "__main__":
    main()
