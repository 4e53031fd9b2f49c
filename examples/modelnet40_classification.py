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

from itnet_geo.datasets import SyntheticShapes
from itnet_geo.train import DataSpec, TrainConfig, parse_duration, train_run


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

    if args.smoke:  # 4 classes of generated shapes, written as ModelNet would be
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
        args.preset, args.time_budget = "smoke", None
    if args.root is None:
        parser.error("--root is required (or --smoke)")

    # Any ModelNet layout under --root, normalised to the unit sphere once.
    spec = DataSpec(
        kind="modelnet40",
        root=args.root,
        num_points=args.num_points,
        cache_dir=args.cache_dir,
    )
    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    config = TrainConfig(
        epochs=args.epochs if args.epochs or budget else 100,
        time_budget=budget,
        batch_size=args.batch_size,
        lr=args.lr,
        label_smoothing=0.2,
        augment=("scale",),  # votes average over mild rescalings (0.8 to 1.25)
        votes=args.votes,
        seed=args.seed,
    )
    # The budget covers the final evaluation too: train_run plans for it.
    summary = train_run(spec, config, args.out, model_preset=args.preset)
    name = "test" if summary["split"] == "test" else "validation"
    print(
        f"{name} accuracy {100 * summary['accuracy']:.2f}% (mean class "
        f"{100 * summary['class_accuracy']:.2f}%, n={summary['n']}) after "
        f"{summary['epochs']} epochs, {summary['elapsed_s']:.0f} s"
    )
    return summary


if __name__ == "__main__":
    main()
