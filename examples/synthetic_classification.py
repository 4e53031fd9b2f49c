"""Classify generated shapes (SyntheticShapes) with ITNetClassifier.

Generates the shapes once (offline), carves a validation split from train,
trains with warm-up + cosine AdamW, keeps the best checkpoint by validation
accuracy and reports test accuracy. The run folder can be evaluated later with
``itnet-geo eval --checkpoint OUT/best.pt``.

    python examples/synthetic_classification.py --epochs 15
    python examples/synthetic_classification.py --smoke      # seconds, for tests
"""

from __future__ import annotations

import argparse

import torch
from torch_geometric.loader import DataLoader

from itnet_geo.datasets import SyntheticShapes
from itnet_geo.nn.models import ITNetClassifier
from itnet_geo.train import (
    DataSpec,
    TrainConfig,
    carve_split,
    default_data_root,
    evaluate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    plot_confusion,
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
    parser.add_argument(
        "--root",
        default=str(default_data_root() / "synthetic"),
        help="where the shapes are generated",
    )
    parser.add_argument("--out", default="runs/synthetic_classification")
    parser.add_argument("--cache-dir", default=None, help="processed-data cache")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--num-points", type=int, default=512)
    parser.add_argument("--preset", default="cpu-1h", help="ITNetClassifier preset")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="4 classes, a few shapes, a tiny model, 1 epoch",
    )
    args = parser.parse_args(argv)

    per_class = {"train": None, "test": None}
    model_options = {}
    if args.smoke:
        args.num_classes, args.num_points, args.epochs = 4, 128, 1
        args.batch_size = 8
        per_class = {"train": 6, "test": 2}
        model_options = SMOKE_MODEL

    # Data: generated once into --root, sampled to points and normalised once.
    def split(name):
        return SyntheticShapes(
            args.root,
            split=name,
            num_per_class=per_class[name],
            num_classes=args.num_classes,
            num_points=args.num_points,
            pre_transform=NormalizeUnitSphere(),
            cache_dir=args.cache_dir,
        )

    train_full, test = split("train"), split("test")
    train, val = carve_split(train_full, fraction=0.1, seed=0)
    spec = DataSpec(
        kind="synthetic",
        root=args.root,
        num_points=args.num_points,
        synthetic_classes=args.num_classes,
        synthetic_train=per_class["train"],
        synthetic_test=per_class["test"],
    )

    # Model.
    torch.manual_seed(args.seed)
    if model_options:
        model = ITNetClassifier(
            train_full.num_classes, num_points=args.num_points, **model_options
        )
    else:
        model = ITNetClassifier.from_preset(
            args.preset, train_full.num_classes, num_points=args.num_points
        )

    # Train (augmentation: rotation about z, anisotropic scaling, jitter).
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augment=("rotate-z", "scale:0.8:1.25", "jitter"),
        warmup_epochs=0.5,
    )
    result = fit(
        model,
        train,
        val,
        config,
        args.out,
        classes=train_full.classes,
        data=spec.to_dict(),
    )

    # Test the best checkpoint.
    best = model_from_checkpoint(load_checkpoint(result.best_path))
    res = evaluate(best, DataLoader(test, batch_size=32), train_full.num_classes)
    plot_confusion(res.confusion, train_full.classes, f"{args.out}/confusion.png")
    print(
        f"test accuracy {100 * res.accuracy:.1f}% (mean class "
        f"{100 * res.class_accuracy:.1f}%, n={res.n}); best epoch "
        f"{result.best['epoch']}, checkpoint {result.best_path}"
    )
    return res


if __name__ == "__main__":
    main()
