r"""``itnet-geo``: demo, train, eval, average, ensemble, compare, bench and info.

.. code-block:: text

    itnet-geo demo                          # under 5 minutes on generated shapes
    itnet-geo train --dataset modelnet40 --root DIR --out runs/mn40 --preset cpu-1h
    itnet-geo train --out runs/mn40 --resume
    itnet-geo eval --checkpoint runs/mn40/best.pt --root TEST_ROOT --split test
    itnet-geo average runs/mn40/epochs/*.pt --out runs/mn40/average.pt
    itnet-geo ensemble runs/a/best.pt runs/b/best.pt --out ens.pt
    torchrun --nproc_per_node=2 -m itnet_geo.train --dataset ... --out ...

Errors (missing data, unknown dataset, unreadable checkpoint, NaN loss) print one
line starting with ``itnet-geo: error:`` and exit with a non-zero status: 2 for
bad arguments, 1 for failures, 3 when training stopped on a non-finite loss, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

PROG = "itnet-geo"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NAN = 3
EXIT_INTERRUPTED = 130
# Set by `train --nproc` for its workers: the command's start (time.time()).
_WORKER_T0 = "ITNET_GEO_T0"

_DATASETS = ("synthetic", "modelnet40", "modelnet10", "shrec16", "folder")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except unset ones (None / False): the help says those."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or action.default == []:
            return action.help or ""
        return super()._get_help_string(action) or ""


_FORMATTER = _Formatter


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str):  # noqa: D102
        self.exit(
            EXIT_USAGE,
            f"{PROG}: error: {message} (see '{self.prog} --help')\n",
        )


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError):
        text = f"missing key {text}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _set_threads(threads: Optional[int]) -> None:
    import torch

    if threads is None:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if local > 1:  # torchrun: share the cores between the processes
            threads = max(1, (os.cpu_count() or 1) // local)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)


def _set_compile(enabled: bool) -> None:
    if enabled:
        from itnet_geo.ops import set_compile

        set_compile(True)  # warns and stays eager where it cannot compile


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (main() may run again)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(verbose: bool = True) -> None:
    logger = logging.getLogger("itnet_geo")
    rank = int(os.environ.get("RANK", "0"))
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose and rank == 0 else logging.WARNING)
    logging.getLogger("itnet_geo.train").setLevel(logger.level)


# -- train ----------------------------------------------------------------------------


def _model_options(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _add_train_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    g = p.add_argument_group("training")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (an upper bound with --time-budget); default 100 without a budget",
    )
    g.add_argument(
        "--time-budget",
        default=None,
        metavar="DURATION",
        help="plan epochs and schedule to end within this time, e.g. "
        "1h, 30m, 5400s (counted from the command's start)",
    )
    g.add_argument("--batch-size", type=int, default=None, help="default 32")
    g.add_argument(
        "--lr", type=float, default=None, help="peak learning rate; default 1e-3"
    )
    g.add_argument(
        "--optimizer", choices=("adamw", "sgd"), default=None, help="default adamw"
    )
    g.add_argument("--weight-decay", type=float, default=None, help="default 0.05")
    g.add_argument("--warmup-epochs", type=float, default=None, help="default 1")
    g.add_argument("--min-lr-ratio", type=float, default=None, help="default 0.01")
    g.add_argument("--label-smoothing", type=float, default=None, help="default 0.1")
    g.add_argument("--grad-clip", type=float, default=None)
    g.add_argument(
        "--augment",
        nargs="*",
        default=None,
        metavar="AUG",
        help="batch augmentation: rotate-x|y|z|so3, scale[:lo:hi], shift[:max], "
        "jitter[:sigma[:clip]], dropout[:max], cutmix[:prob[:beta]] (PointCutMix, "
        "mixes labels too); default per dataset",
    )
    g.add_argument(
        "--votes",
        type=int,
        default=None,
        help="votes of the final test evaluation; default 1",
    )
    g.add_argument("--eval-every", type=int, default=None, help="default 1")
    g.add_argument(
        "--keep-epochs",
        type=int,
        default=None,
        metavar="N",
        help="also keep the weights of the last N epochs in OUT/epochs/, for "
        "`itnet-geo average` (default 0; may be set when resuming)",
    )
    g.add_argument(
        "--average-epochs",
        type=int,
        default=None,
        metavar="N",
        help="stochastic weight averaging: the last N epochs train at the constant "
        "rate --min-lr-ratio x --lr after the cosine, and their mean weights "
        "(batch norm measured again) become OUT/average.pt, which the final "
        "evaluation scores (default 0; needs --epochs)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="seeds weights, data order and augmentation"
    )
    g.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    g.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    m = p.add_argument_group("model")
    m.add_argument(
        "--preset",
        default=None,
        help="training preset (model preset + hyper-parameters): cpu-1h, demo",
    )
    m.add_argument(
        "--model",
        default=None,
        help="itnet_classifier (points), mesh_itnet (meshes), or the peers "
        "pointnet2_ssg and dgcnn (points)",
    )
    m.add_argument(
        "--model-preset",
        default=None,
        help="ITNetClassifier preset: cpu-1h, default, large, smoke",
    )
    m.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model constructor option (JSON value), repeatable",
    )
    m.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start from this checkpoint's model and weights (fine-tuning; fresh "
        "optimiser and schedule, same classes), instead of --model*",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument(
        "--compile",
        action="store_true",
        help="run the neighbourhood sums through torch.compile (needs a C++ "
        "compiler; the first steps compile; falls back to eager with a warning)",
    )
    if not demo:
        g.add_argument(
            "--nproc",
            type=int,
            default=1,
            help="train with this many local processes (DDP over gloo on CPU), the "
            "batch split between them and the cores shared (--threads is per "
            "process, default cores / nproc); on 2 cores two 1-thread processes "
            "trained 1.6x as fast as one 2-thread process (benchmarks/parallel.py)",
        )


def _add_data_options(p: argparse.ArgumentParser, demo: bool = False) -> None:
    d = p.add_argument_group("data")
    if not demo:
        d.add_argument(
            "--dataset",
            choices=_DATASETS,
            default=None,
            help="dataset kind (required unless --resume)",
        )
    d.add_argument(
        "--root",
        default=None,
        help="data folder (synthetic: where shapes are generated; "
        "default $ITNET_GEO_DATA/synthetic or "
        "~/.cache/itnet_geo/data/synthetic)",
    )
    d.add_argument("--num-points", type=int, default=None, help="default 1024")
    d.add_argument(
        "--train-points",
        type=int,
        default=None,
        metavar="M",
        help="point resampling: sample training shapes with M points and draw "
        "--num-points of them at random each epoch (validation: one fixed draw)",
    )
    d.add_argument(
        "--normals", action="store_true", help="feed point normals to the model"
    )
    if demo:
        p.set_defaults(input=None, hks=16, hks_eigs=64, layout="auto")
    else:
        d.add_argument(
            "--input",
            choices=("points", "mesh"),
            default=None,
            help="point clouds, or mesh graphs with HKS features; default "
            "mesh for shrec16, else points",
        )
        d.add_argument("--hks", type=int, default=16, help="mesh input: HKS features")
        d.add_argument(
            "--hks-eigs",
            type=int,
            default=64,
            help="mesh input: Laplacian eigenpairs of the HKS (more reach more "
            "local scales)",
        )
        d.add_argument("--layout", default="auto", help="ModelNet layout")
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of each class of train used for validation; 0 "
        "validates on the test split if there is one",
    )
    d.add_argument("--val-seed", type=int, default=0, help="seed of that split")
    d.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="point sampling / shape generation seed",
    )
    d.add_argument(
        "--synthetic-classes",
        type=int,
        default=10,
        help="synthetic: number of classes (at most 13)",
    )
    d.add_argument(
        "--synthetic-train",
        type=int,
        default=None,
        help="synthetic: shapes per class in train (default 64)",
    )
    d.add_argument(
        "--synthetic-test",
        type=int,
        default=None,
        help="synthetic: shapes per class in test (default 16)",
    )
    d.add_argument(
        "--cache-dir",
        default=None,
        help="processed-data cache (default $ITNET_GEO_CACHE or ~/.cache/itnet_geo)",
    )


def _train_settings(args: argparse.Namespace, kind: str) -> tuple[Any, Any, dict]:
    from itnet_geo.train import (
        DEFAULT_AUGMENT,
        TRAIN_PRESETS,
        DataSpec,
        TrainConfig,
        default_data_root,
        parse_duration,
    )

    preset: dict[str, Any] = {}
    if args.preset is not None:
        if args.preset not in TRAIN_PRESETS:
            raise ValueError(
                f"unknown preset {args.preset!r}; choose one of "
                f"{', '.join(TRAIN_PRESETS)}"
            )
        preset = dict(TRAIN_PRESETS[args.preset])

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        return preset.get(name, default)

    budget = pick("time_budget", None)
    budget = None if budget is None else parse_duration(budget)
    epochs = pick("epochs", None if budget is not None else 100)
    if pick("average_epochs", 0) and budget is not None and args.time_budget is None:
        raise ValueError(
            f"--average-epochs needs a fixed number of epochs, and --preset "
            f"{args.preset} plans to a time budget: take its model with "
            f"--model-preset {preset.get('model_preset', args.preset)} and give "
            "--epochs"
        )
    root = args.root
    if root is None:
        if kind != "synthetic":
            raise ValueError(f"--root is required for the {kind} dataset")
        root = str(default_data_root() / "synthetic")
    input_kind = args.input or ("mesh" if kind == "shrec16" else "points")
    spec = DataSpec(
        kind=kind,
        root=root,
        num_points=pick("num_points", 1024),
        train_points=pick("train_points", None),
        input=input_kind,
        normals=args.normals,
        hks=args.hks,
        hks_eigs=args.hks_eigs,
        layout=args.layout,
        seed=args.data_seed,
        val_fraction=args.val_fraction,
        val_seed=args.val_seed,
        synthetic_classes=args.synthetic_classes,
        synthetic_train=args.synthetic_train,
        synthetic_test=args.synthetic_test,
        cache_dir=args.cache_dir,
    )
    augment = pick("augment", None)
    if augment is None:
        augment = DEFAULT_AUGMENT[kind] if input_kind == "points" else ()
    config = TrainConfig(
        epochs=epochs,
        batch_size=pick("batch_size", 32),
        lr=pick("lr", 1e-3),
        optimizer=pick("optimizer", "adamw"),
        weight_decay=pick("weight_decay", 0.05),
        warmup_epochs=pick("warmup_epochs", 1.0),
        min_lr_ratio=pick("min_lr_ratio", 0.01),
        label_smoothing=pick("label_smoothing", 0.1),
        grad_clip=pick("grad_clip", None),
        seed=args.seed,
        augment=tuple(augment),
        votes=pick("votes", 1),
        eval_every=pick("eval_every", 1),
        time_budget=budget,
        num_workers=args.num_workers,
        device=args.device,
        keep_epochs=args.keep_epochs or 0,
        average_epochs=pick("average_epochs", 0),
        init=args.init,
    )
    if args.init is not None:
        given = [
            flag
            for flag, value in (
                ("--model", args.model),
                ("--model-preset", args.model_preset),
                ("--model-option", args.model_option),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"--init takes the model from {args.init}: drop {', '.join(given)}"
            )
        return spec, config, {}
    model = {
        "model": args.model,
        "model_preset": args.model_preset or preset.get("model_preset"),
        "model_options": {
            **preset.get("model_options", {}),
            **_model_options(args.model_option),
        },
    }
    return spec, config, model


def _print_summary(summary: dict[str, Any]) -> None:
    from itnet_geo.train.loop import BEST_FILE, CURVES_FILE, LAST_FILE, METRICS_FILE
    from itnet_geo.train.run import (
        AVERAGE_FILE,
        CONFUSION_FILE,
        PREDICTIONS_FILE,
        RESULTS_FILE,
    )

    out = summary["out"]
    averaged = summary.get("averaged_epochs")
    epochs_text = None
    if averaged is not None:
        first, last = averaged
        epochs_text = f"epoch {last}" if first == last else f"epochs {first}-{last}"
    if "accuracy" in summary:
        split = summary["split"]
        votes = summary.get("votes", 1)
        scored = "" if averaged is None else f" of {AVERAGE_FILE} ({epochs_text})"
        print(
            f"{split} accuracy{scored}: {100 * summary['accuracy']:.2f}% "
            f"(mean class {100 * summary['class_accuracy']:.2f}%, "
            f"n={summary['n']}{f', {votes} votes' if votes > 1 else ''}) after "
            f"{summary['epochs']} epoch(s) in {summary['elapsed_s']:.0f} s"
        )
    names = (
        METRICS_FILE,
        CURVES_FILE,
        CONFUSION_FILE,
        PREDICTIONS_FILE,
        BEST_FILE,
        AVERAGE_FILE,
        LAST_FILE,
        RESULTS_FILE,
    )
    labels = {BEST_FILE: f"epoch {summary['best_epoch']}", AVERAGE_FILE: epochs_text}
    written = [
        f"{name} ({labels[name]})" if labels.get(name) else name
        for name in names
        if os.path.isfile(os.path.join(out, name))
    ]
    print(f"run folder {out}: {', '.join(written)}")


def _without_option(argv: Sequence[str], name: str) -> list[str]:
    """:obj:`argv` without ``name VALUE`` / ``name=VALUE``."""
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == name:
            skip = True
        elif not item.startswith(name + "="):
            out.append(item)
    return out


def _launch_local(args: argparse.Namespace, clock_start: float) -> int:
    """Run this ``train`` command in :obj:`args.nproc` local DDP processes."""
    from itnet_geo.train.distributed import launch_local

    n = args.nproc
    argv = _without_option(args.argv, "--nproc")
    if args.resume is None:
        if args.dataset is None:
            raise ValueError("--dataset is required (or --resume to continue a run)")
        _, config, _ = _train_settings(args, args.dataset)  # fails early on bad flags
        if config.batch_size % n:
            raise ValueError(
                f"the batch of {config.batch_size} does not split evenly over "
                f"--nproc {n} processes"
            )
        argv += ["--batch-size", str(config.batch_size // n)]
    threads = args.threads or max(1, (os.cpu_count() or 1) // n)
    argv += ["--threads", str(threads)]
    # The workers count a time budget from this command's start.
    started = time.time() - (time.perf_counter() - clock_start)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env[_WORKER_T0] = repr(started)
    code = launch_local(argv, n, env)
    if code == EXIT_INTERRUPTED:  # the workers were interrupted, not this process
        raise KeyboardInterrupt
    return code


def _train_out(args: argparse.Namespace) -> str:
    """The run folder of ``train``: --out, --resume's folder or runs/<dataset>."""
    if args.out is not None:
        return args.out
    if args.resume:  # a checkpoint file: continue in its folder
        return str(Path(args.resume).parent)
    if args.resume == "":
        raise ValueError("--resume needs the run: --out RUN, or --resume RUN/last.pt")
    if args.dataset is None:
        raise ValueError("--dataset is required (or --resume to continue a run)")
    return os.path.join("runs", args.dataset)


def _cmd_train(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train import train_run
    from itnet_geo.train.distributed import dist_info
    from itnet_geo.train.run import refuse_to_overwrite

    if args.nproc < 1:
        raise ValueError(f"--nproc must be positive, got {args.nproc}")
    args.out = _train_out(args)
    if args.resume is None and not args.overwrite:
        refuse_to_overwrite(args.out)  # before any process or data loading
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_local(args, clock_start)
    _set_threads(args.threads)
    _set_compile(args.compile)
    if args.resume is not None:
        summary = train_run(
            None,
            None,
            args.out,
            resume=True if args.resume == "" else args.resume,
            progress=not args.no_progress,
            clock_start=clock_start,
            root=args.root,
            cache_dir=args.cache_dir,
            keep_epochs=args.keep_epochs,
        )
    else:
        if args.dataset is None:
            raise ValueError("--dataset is required (or --resume to continue a run)")
        spec, config, model = _train_settings(args, args.dataset)
        summary = train_run(
            spec,
            config,
            args.out,
            progress=not args.no_progress,
            clock_start=clock_start,
            overwrite=args.overwrite,
            **model,
        )
    if dist_info().is_main:
        _print_summary(summary)
    return 0


# -- demo -----------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train import train_run

    _set_threads(args.threads)
    _set_compile(args.compile)
    if args.preset is None:
        args.preset = "demo"
    if args.smoke:
        args.synthetic_classes = min(args.synthetic_classes, 4)
        args.synthetic_train = args.synthetic_train or 6
        args.synthetic_test = args.synthetic_test or 2
        args.num_points = args.num_points or 128
        args.epochs = args.epochs or 1
        args.batch_size = args.batch_size or 8
        args.time_budget = None
        args.preset = None
        args.val_fraction = min(args.val_fraction, 0.2)
        args.model_preset = args.model_preset or "smoke"
    spec, config, model = _train_settings(args, "synthetic")
    summary = train_run(
        spec,
        config,
        args.out,
        progress=not args.no_progress,
        clock_start=clock_start,
        overwrite=True,  # running the demo again replaces the last demo run
        **model,
    )
    _print_summary(summary)
    return 0


# -- eval -----------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train import evaluate_checkpoint

    _set_threads(args.threads)
    _set_compile(args.compile)
    if args.votes < 1:
        raise ValueError(f"--votes must be at least 1, got {args.votes}")
    result = evaluate_checkpoint(
        args.checkpoint,
        root=args.root,
        split=args.split,
        votes=args.votes,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        dataset=args.dataset,
        seed=args.seed,
        progress=args.progress,
        predictions=args.predictions,
        class_weights=args.class_weights,
    )
    line = {key: v for key, v in result.to_dict().items() if key != "loss"}
    print(json.dumps(line))
    return 0


def _cmd_average(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train import average_checkpoints

    _set_threads(args.threads)
    written = average_checkpoints(
        args.checkpoints,
        args.out,
        root=args.root,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        seed=args.seed,
        progress=args.progress,
    )
    print(json.dumps({"out": str(args.out), **written["averaged"]}))
    return 0


def _cmd_ensemble(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train import pack_ensemble

    written = pack_ensemble(args.checkpoints, args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "members": written["ensemble"]["files"],
                "classes": len(written["classes"]),
                "parameters": written["ensemble"]["parameters"],
            }
        )
    )
    return 0


def _cmd_compare(args: argparse.Namespace, clock_start: float) -> int:
    from itnet_geo.train.compare import compare_runs, format_table

    rows = compare_runs(
        args.runs,
        out=args.out,
        last=args.last,
        at_epoch=args.at_epoch,
        labels=args.labels,
    )
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_table(rows))
    if args.out is not None:
        print(f"plot: {args.out}", file=sys.stderr)
    return 0


# -- bench ----------------------------------------------------------------------------


def _benchmark_dir() -> Optional[Path]:
    import itnet_geo

    for folder in (
        Path.cwd() / "benchmarks",
        Path(itnet_geo.__file__).resolve().parents[1] / "benchmarks",
    ):
        if folder.is_dir() and any(folder.glob("*.py")):
            return folder
    return None


def _builtin_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch_geometric.data import Batch, Data

    from itnet_geo.nn.models import ITNetClassifier

    torch.manual_seed(0)
    model = ITNetClassifier.from_preset(
        args.model_preset, num_classes=40, num_points=args.num_points
    )
    batch = Batch.from_data_list(
        [Data(pos=torch.randn(args.num_points, 3)) for _ in range(args.batch_size)]
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def timed(fn, seconds: float) -> float:
        fn()  # warm-up
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return count * args.batch_size / elapsed

    def train_step() -> None:
        model.train()
        loss = model(batch).logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer() -> None:
        model.eval()
        model(batch)

    return {
        "model": f"itnet_classifier/{args.model_preset}",
        "num_points": args.num_points,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "train_clouds_per_s": round(timed(train_step, args.seconds), 2),
        "inference_clouds_per_s": round(timed(infer, args.seconds), 2),
    }


def _cmd_bench(args: argparse.Namespace, clock_start: float) -> int:
    _set_threads(args.threads)
    folder = None if args.builtin else _benchmark_dir()
    if folder is None:
        print(json.dumps(_builtin_bench(args)))
        return 0
    scripts = sorted(folder.glob("*.py"))
    if args.scripts:
        wanted = {s.removesuffix(".py") for s in args.scripts}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            raise ValueError(
                f"no benchmark {', '.join(sorted(unknown))} in {folder}; have "
                f"{', '.join(s.stem for s in scripts)}"
            )
        scripts = [s for s in scripts if s.stem in wanted]
    status = 0
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"$ {' '.join(cmd)}", flush=True)
        code = subprocess.call(cmd, cwd=folder.parent)
        if code != 0:
            print(
                f"{PROG}: error: {script.name} exited with status {code}",
                file=sys.stderr,
            )
            status = EXIT_FAILURE
    return status


# -- info -----------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cxx_compiler() -> str:
    """The C++ compiler torch.compile would find (what --compile needs)."""
    from itnet_geo.ops.fused import cxx_compiler

    path = cxx_compiler()
    return (
        "none found (--compile stays eager)"
        if path is None
        else f"{path} (for --compile)"
    )


def _cmd_info(args: argparse.Namespace, clock_start: float) -> int:
    import torch

    import itnet_geo
    from itnet_geo.datasets import default_cache_dir
    from itnet_geo.train import default_data_root
    from itnet_geo.typing import WITH_TORCH_CLUSTER, WITH_TORCH_SCATTER

    shared = os.environ.get("ITNET_GEO_SHARED_DATA")
    rows = [
        ("itnet_geo", f"{itnet_geo.__version__} ({Path(itnet_geo.__file__).parent})"),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch_geometric", _version("torch_geometric")),
        ("torch_scatter", _version("torch_scatter")),
        ("torch_cluster", _version("torch_cluster")),
        ("numpy", _version("numpy")),
        ("scipy", _version("scipy")),
        ("trimesh", _version("trimesh")),
        ("WITH_TORCH_CLUSTER", str(WITH_TORCH_CLUSTER)),
        ("WITH_TORCH_SCATTER", str(WITH_TORCH_SCATTER)),
        ("torch threads", f"{torch.get_num_threads()} (cpus: {os.cpu_count()})"),
        ("cuda", str(torch.cuda.is_available())),
        ("C++ compiler", _cxx_compiler()),
        ("cache dir", str(default_cache_dir())),
        ("data dir", str(default_data_root())),
    ]
    if shared:
        rows.append(("shared data", shared))
    benches = _benchmark_dir()
    if benches is not None:
        rows.append(("benchmarks", str(benches)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# -- parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    r"""The ``itnet-geo`` parser: every sub-command, demo to info."""
    parser = _Parser(
        prog=PROG,
        description="ITNet integral-transform networks for point clouds and "
        "meshes: train, evaluate, benchmark.",
        formatter_class=_FORMATTER,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version('itnet-geo')}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="train on generated shapes (about 4 minutes), with plots",
        description="Generate SyntheticShapes (once), train ITNetClassifier with a "
        "time-budgeted schedule, and report test accuracy; writes metrics.jsonl, "
        "curves.png, confusion.png and checkpoints to --out.",
        formatter_class=_FORMATTER,
    )
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="run folder")
    demo.add_argument(
        "--smoke",
        action="store_true",
        help="a seconds-long run on a handful of shapes (tests)",
    )
    _add_data_options(demo, demo=True)
    _add_train_options(demo, demo=True)
    demo.set_defaults(func=_cmd_demo)

    train = sub.add_parser(
        "train",
        help="train a classifier on a dataset",
        description="Train on a dataset's train split (validation carved from it), "
        "then evaluate the best checkpoint (with --average-epochs: the average) on "
        "the test split if there is one, else on the validation split.",
        formatter_class=_FORMATTER,
    )
    train.add_argument(
        "--out",
        default=None,
        help="run folder (default: runs/<dataset>, or with --resume CHECKPOINT "
        "the checkpoint's folder)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run even if --out holds one (its files are replaced)",
    )
    train.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run in --out (or from CHECKPOINT, a "
        "last.pt) exactly where it stopped",
    )
    _add_data_options(train)
    _add_train_options(train)
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (or an ensemble); prints one JSON line",
        description="Evaluate a checkpoint, or the ensemble of several, on a split "
        "of a data root laid out like the training one; prints "
        '{"accuracy": .., "class_accuracy": .., "n": ..}.',
        formatter_class=_FORMATTER,
    )
    ev.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        metavar="FILE",
        help="best.pt or last.pt; several score as an ensemble (the mean of their "
        "class probabilities)",
    )
    ev.add_argument(
        "--root", default=None, help="data folder (default: the training root)"
    )
    ev.add_argument("--split", default="test", choices=("test", "train", "val"))
    ev.add_argument(
        "--votes",
        type=int,
        default=1,
        help="average logits over this many augmented copies",
    )
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument(
        "--dataset",
        choices=_DATASETS,
        default=None,
        help="dataset kind, for checkpoints that do not record it",
    )
    ev.add_argument("--cache-dir", default=None, help="processed-data cache")
    ev.add_argument("--seed", type=int, default=0, help="seed of the voting")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument(
        "--compile",
        action="store_true",
        help="run the neighbourhood sums through torch.compile",
    )
    ev.add_argument("--progress", action="store_true", help="show a progress bar")
    ev.add_argument(
        "--predictions",
        default=None,
        metavar="CSV",
        help="also write one row per shape there: its file, true and predicted "
        "class, confidence, correct (0/1)",
    )
    ev.add_argument(
        "--class-weights",
        default=None,
        metavar="NAME|JSON",
        help="also print weighted_accuracy: the per-class accuracies averaged with "
        "these weights, modelnet40-test / modelnet10-test (shapes per class in the "
        'official test split) or a JSON file {"class": weight, ...}; how a '
        "validation split carved from train would score with the test split's "
        "class sizes",
    )
    ev.set_defaults(func=_cmd_eval)

    avg = sub.add_parser(
        "average",
        help="average the weights of several checkpoints of one model",
        description="Average the weights of checkpoints of one model (a run's last "
        "epochs, kept with `train --keep-epochs N`), measure its batch-norm "
        "statistics again on the training shapes, and write a checkpoint that "
        "`itnet-geo eval` reads; prints one JSON line.",
        formatter_class=_FORMATTER,
    )
    avg.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    avg.add_argument("--out", required=True, help="the averaged checkpoint to write")
    avg.add_argument(
        "--root", default=None, help="training data folder (default: the recorded one)"
    )
    avg.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch of the batch-norm pass (default: the run's, per process)",
    )
    avg.add_argument("--cache-dir", default=None, help="processed-data cache")
    avg.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    avg.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    avg.add_argument("--progress", action="store_true", help="show a progress bar")
    avg.set_defaults(func=_cmd_average)

    ens = sub.add_parser(
        "ensemble",
        help="pack several checkpoints into one ensemble checkpoint",
        description="Write the ensemble of several checkpoints (the mean of their "
        "class probabilities, as `eval --checkpoint a.pt b.pt` scores them) as one "
        "checkpoint that `itnet-geo eval` reads like any other; the members must "
        "know the same classes and read the data alike. Prints one JSON line.",
        formatter_class=_FORMATTER,
    )
    ens.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    ens.add_argument("--out", required=True, help="the ensemble checkpoint to write")
    ens.set_defaults(func=_cmd_ensemble)

    cmp = sub.add_parser(
        "compare",
        help="compare training runs: a table and a plot of their curves",
        description="Compare training runs side by side: epochs, run clock, "
        "throughput, best validation accuracy, the best within and the accuracy at "
        "the epoch all runs have reached (equal training), the mean of the last "
        "epochs; with --out, validation accuracy against epoch and against wall "
        "time and the training loss in one PNG. A run is its directory, its "
        "metrics.jsonl or its last.pt.",
        formatter_class=_FORMATTER,
    )
    cmp.add_argument("runs", nargs="+", metavar="RUN")
    cmp.add_argument("--out", default=None, metavar="PNG", help="write the plot there")
    cmp.add_argument(
        "--at-epoch",
        type=int,
        default=None,
        help="compare at this epoch (default: the last one every run has reached)",
    )
    cmp.add_argument(
        "--last", type=int, default=10, help="epochs of the mean-of-last column"
    )
    cmp.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="one name per run (default: its directory)",
    )
    cmp.add_argument(
        "--json", action="store_true", help="one JSON line per run instead of a table"
    )
    cmp.set_defaults(func=_cmd_compare)

    bench = sub.add_parser(
        "bench",
        help="run the benchmarks (benchmarks/*.py) or a built-in throughput test",
        formatter_class=_FORMATTER,
    )
    bench.add_argument(
        "scripts",
        nargs="*",
        metavar="NAME",
        help="benchmark scripts to run (default: all)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="pass --quick to the scripts"
    )
    bench.add_argument(
        "--builtin",
        action="store_true",
        help="the built-in ITNetClassifier throughput test",
    )
    bench.add_argument("--model-preset", default="cpu-1h")
    bench.add_argument("--num-points", type=int, default=1024)
    bench.add_argument("--batch-size", type=int, default=32)
    bench.add_argument(
        "--seconds", type=float, default=5.0, help="built-in: seconds per measurement"
    )
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.set_defaults(func=_cmd_bench)

    info = sub.add_parser(
        "info",
        help="versions, threads, compiled extras, data paths",
        formatter_class=_FORMATTER,
    )
    info.set_defaults(func=_cmd_info)
    return parser


def _is_secondary_process() -> bool:
    """Whether another process reports this run's interruption or non-finite loss.

    True for a DDP worker of ``train --nproc`` (its launcher reports) and for a rank
    other than 0 under ``torchrun``.
    """
    return _WORKER_T0 in os.environ or os.environ.get("RANK", "0") != "0"


def main(argv: Optional[Sequence[str]] = None) -> int:
    r"""Run ``itnet-geo`` on :obj:`argv` (default ``sys.argv[1:]``); the exit status."""
    clock_start = time.perf_counter()
    if _WORKER_T0 in os.environ:  # a worker of `train --nproc`: its start
        clock_start -= time.time() - float(os.environ[_WORKER_T0])
        from itnet_geo.train.distributed import watch_launcher

        watch_launcher()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    _setup_logging()
    from itnet_geo.io import ReadError
    from itnet_geo.train import CheckpointError, NonFiniteLossError
    from itnet_geo.train.distributed import cleanup_distributed
    from itnet_geo.train.loop import LAST_FILE

    try:
        return args.func(args, clock_start)
    except KeyboardInterrupt:
        if _is_secondary_process():
            return EXIT_INTERRUPTED
        hint = ""
        out = getattr(args, "out", None) if args.command == "train" else None
        if out is not None and (Path(out) / LAST_FILE).is_file():
            hint = f"; continue with: {PROG} train --out {out} --resume"
        print(f"{PROG}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLossError as err:  # every rank stops on it: one reports
        if _is_secondary_process():
            return EXIT_NAN
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_NAN
    except (
        CheckpointError,
        ReadError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        ValueError,
        KeyError,
    ) as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    sys.exit(main())
