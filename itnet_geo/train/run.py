r"""Whole runs: data + model + :func:`~itnet_geo.train.fit` + final test, and eval.

What ``itnet-geo train`` / ``eval`` / ``demo`` do, without the command line:
:func:`train_run` reads the dataset a :class:`~itnet_geo.train.DataSpec`
describes, carves the validation split, builds the model, trains, evaluates the
best checkpoint on the test split (with voting) and writes ``results.json`` and
``confusion.png``; :func:`evaluate_checkpoint` scores a checkpoint on any root
laid out like the one it was trained on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

import itnet_geo
from itnet_geo._atomic import atomic_open, write_atomic
from itnet_geo.ops import compile_enabled
from itnet_geo.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    seed_everything,
    some_names,
)
from itnet_geo.train.data import (
    DataSpec,
    build_augment,
    build_split,
    build_train_val,
    shape_names,
    vote_augment,
)
from itnet_geo.train.distributed import (
    barrier,
    dist_info,
    gather_objects,
    init_distributed,
)
from itnet_geo.train.ensemble import ensemble_from_checkpoints
from itnet_geo.train.evaluate import (
    EvalResult,
    evaluate,
    read_class_weights,
    write_predictions,
)
from itnet_geo.train.loop import (
    BEST_FILE,
    LAST_FILE,
    LOG_FILE,
    TrainConfig,
    _FileLog,
    _shard,
    elapsed_before,
    fit,
)
from itnet_geo.train.metrics import weighted_accuracy
from itnet_geo.train.plots import plot_confusion

log = logging.getLogger("itnet_geo.train")

#: The model each input kind gets unless another is named.
DEFAULT_MODEL = {"points": "itnet_classifier", "mesh": "mesh_itnet"}
RESULTS_FILE = "results.json"
CONFUSION_FILE = "confusion.png"
PREDICTIONS_FILE = "predictions.csv"
AVERAGE_FILE = "average.pt"


def make_model(
    spec: DataSpec,
    num_classes: int,
    model: Optional[str] = None,
    preset: Optional[str] = None,
    options: Optional[dict[str, Any]] = None,
) -> nn.Module:
    r"""The model for :obj:`spec`'s inputs from :mod:`itnet_geo.nn.models`.

    ``itnet_classifier`` for point clouds (``num_points`` and ``in_channels`` from
    :obj:`spec`; :obj:`preset` names an entry of
    :data:`itnet_geo.nn.models.PRESETS`), ``mesh_itnet`` for mesh graphs
    (``in_channels`` = HKS features). :obj:`options` override constructor
    arguments.
    """
    from itnet_geo.nn.models import ITNetClassifier, build_model

    name = model or DEFAULT_MODEL[spec.input]
    options = dict(options or {})
    if name == ITNetClassifier.name:
        options.setdefault("num_points", spec.num_points)
        if preset is not None:
            return ITNetClassifier.from_preset(
                preset, num_classes, in_channels=spec.in_channels, **options
            )
    elif preset is not None:
        raise ValueError(
            f"model presets are for {ITNetClassifier.name} only, not {name}"
        )
    return build_model(
        name, num_classes=num_classes, in_channels=spec.in_channels, **options
    )


def _try_split(spec: DataSpec, split: str, progress: bool) -> Optional[Dataset]:
    if spec.kind == "synthetic":
        return build_split(spec, split, progress)
    try:
        return build_split(spec, split, progress)
    except FileNotFoundError as err:
        text = str(err)
        if f"no '{split}' split" in text or f"'{split}' split)" in text:
            return None
        raise


def load_datasets(
    spec: DataSpec, progress: bool = True
) -> tuple[Dataset, Optional[Dataset], Optional[Dataset], list[str]]:
    r"""``(train, validation, test, classes)`` for :obj:`spec`.

    Validation is carved from train (:attr:`DataSpec.val_fraction` per class,
    seeded by :attr:`DataSpec.val_seed`); with a fraction of 0 it is the test
    split when there is one. Test is :obj:`None` when the root has no test
    split. Under torch.distributed rank 0 reads (and caches) first;
    :obj:`progress` shows progress bars while files are processed.
    """
    info = dist_info()
    if not info.is_main:
        barrier()
    train, val = build_train_val(spec, progress)
    test = _try_split(spec, "test", progress)
    if info.is_main:
        barrier()
    classes = list(train.classes)
    if test is not None and list(test.classes) != classes:
        raise ValueError(
            f"the train and test splits of {spec.root} have different classes"
        )
    if spec.val_fraction <= 0:
        val = test
    return train, val, test, classes


def _voting(augment: Any, votes: int) -> tuple[int, Any]:
    """Votes and their augmentation; one vote when training used no augmentation."""
    transform = build_augment(vote_augment(tuple(augment or ())))
    if votes > 1 and transform is None:
        log.warning("no augmentation to vote over (training used none): 1 vote")
        return 1, None
    return votes, transform


def _eval_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    info = dist_info()
    return DataLoader(
        _shard(dataset, info.rank, info.world_size),
        batch_size=batch_size,
        shuffle=False,
    )


def train_run(
    spec: Optional[DataSpec],
    config: Optional[TrainConfig],
    out_dir: str | os.PathLike,
    model: Optional[str] = None,
    model_preset: Optional[str] = None,
    model_options: Optional[dict[str, Any]] = None,
    resume: bool | str | os.PathLike = False,
    progress: bool = True,
    clock_start: Optional[float] = None,
    root: Optional[str | os.PathLike] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    keep_epochs: Optional[int] = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    r"""Train on :obj:`spec`'s data and evaluate the best checkpoint.

    Writes to :obj:`out_dir`: ``metrics.jsonl``, ``train.log``, ``curves.png``,
    ``best.pt``, ``last.pt`` (see :func:`~itnet_geo.train.fit`), and after
    training ``confusion.png``, ``predictions.csv`` (one row per shape, see
    :func:`~itnet_geo.train.write_predictions`) and ``results.json`` with the
    final evaluation of ``best.pt`` (test split with :attr:`TrainConfig.votes`
    votes, or the validation split when there is no test split). With
    :attr:`TrainConfig.average_epochs` the final evaluation scores
    ``average.pt`` instead, the mean of the last epochs' weights
    (:func:`~itnet_geo.train.average_run`); a run killed while writing it
    writes it again when resumed. With :attr:`TrainConfig.init` a new run starts
    from that checkpoint's model and weights (same classes; :obj:`model`,
    :obj:`model_preset` and :obj:`model_options` must not be given) with a
    fresh optimiser and schedule.

    With :obj:`resume` (``True`` for ``<out_dir>/last.pt``, or a path) the data,
    model and training options are those stored in the checkpoint; :obj:`root`
    and :obj:`cache_dir` may point elsewhere (data moved), :obj:`keep_epochs`
    replaces :attr:`TrainConfig.keep_epochs` (it changes no result), :obj:`spec`
    and :obj:`config` are ignored.

    A new run does not start in a folder that holds another run's ``last.pt``
    (its hours of training would be overwritten after the first epoch) unless
    :obj:`overwrite` is set.

    Returns:
        dict: The summary also written to ``results.json``.

    Raises:
        FileExistsError: :obj:`out_dir` holds a run and neither :obj:`resume`
            nor :obj:`overwrite` is set.
    """
    clock_start = time.perf_counter() if clock_start is None else clock_start
    init_distributed()
    info = dist_info()
    out = Path(out_dir)
    ckpt = None
    if not resume and (spec is None or config is None):
        raise ValueError("a new run needs a DataSpec and a TrainConfig")
    if not resume and not overwrite:
        refuse_to_overwrite(out)
    if resume:
        path = out / LAST_FILE if resume is True else Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"nothing to resume: {path} does not exist")
        ckpt = load_checkpoint(path)
        spec = checkpoint_spec(ckpt, path, root, cache_dir)
        kept = {} if keep_epochs is None else {"keep_epochs": keep_epochs}
        config = TrainConfig.from_dict(ckpt["train"], **kept)
        _bring_best(path, ckpt, out, info.is_main)
    datasets = load_datasets(spec, progress and info.is_main)
    file_log = _FileLog(None)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        file_log = _FileLog(out / LOG_FILE)  # train.log from the data line on
        log.info(
            "itnet_geo %s, torch %s: %d process(es) of %d thread(s)%s",
            itnet_geo.__version__,
            torch.__version__,
            info.world_size,
            torch.get_num_threads(),
            ", compiled neighbourhood sums" if compile_enabled() else "",
        )
    try:
        return _train_and_score(
            spec,
            config,
            ckpt,
            out,
            datasets,
            model,
            model_preset,
            model_options,
            progress,
            clock_start,
        )
    finally:
        file_log.close()


def refuse_to_overwrite(out: str | os.PathLike) -> None:
    """Stop a new run from replacing the run already in :obj:`out`.

    Raises:
        FileExistsError: :obj:`out` holds a ``last.pt``; the message names its
            epoch and the command that continues it.
    """
    out = Path(out)
    last = out / LAST_FILE
    if not last.is_file():
        return
    try:
        ckpt = load_checkpoint(last)
        where = f"at epoch {ckpt['epoch']} of {ckpt['train']['epochs']}"
    except (CheckpointError, KeyError, TypeError):
        where = "unreadable"
    raise FileExistsError(
        f"{out} already holds a run ({LAST_FILE} {where}): continue it with "
        f"`itnet-geo train --out {out} --resume`, or start the new run in "
        "another folder (--overwrite, overwrite=True in Python, replaces it)"
    )


def _train_and_score(
    spec: DataSpec,
    config: TrainConfig,
    ckpt: Optional[dict[str, Any]],
    out: Path,
    datasets: tuple[Dataset, Optional[Dataset], Optional[Dataset], list[str]],
    model: Optional[str],
    model_preset: Optional[str],
    model_options: Optional[dict[str, Any]],
    progress: bool,
    clock_start: float,
) -> dict[str, Any]:
    """:func:`train_run` once its data, options and checkpoint are settled."""
    info = dist_info()
    train, val, test, classes = datasets
    if ckpt is not None:
        if list(ckpt["classes"]) != classes:
            raise CheckpointError(
                "the dataset's classes differ from the checkpoint's: "
                f"{classes} vs {list(ckpt['classes'])}"
            )
        from itnet_geo.train.checkpoint import build_model

        net = build_model(ckpt["model"])
    elif config.init is not None:
        if model is not None or model_preset is not None or model_options:
            raise ValueError("a run started from init takes the init's model")
        seed_everything(config.seed)
        net = _initial_model(config.init, spec, classes)
    else:
        seed_everything(config.seed)
        net = make_model(spec, len(classes), model, model_preset, model_options)
    final_set = test if test is not None else val
    final_size = 0 if final_set is None else len(final_set) * config.votes
    if info.is_main:
        log.info(
            "data: %s at %s — %d classes, %d train / %d validation / %s test shapes",
            spec.kind,
            spec.root,
            len(classes),
            len(train),
            0 if val is None else len(val),
            "no" if test is None else len(test),
        )
        log.info(
            "model: %s (%s parameters)",
            getattr(net, "name", type(net).__name__),
            f"{sum(p.numel() for p in net.parameters()):,}",
        )
    result = fit(
        net,
        train,
        val,
        config,
        out,
        classes,
        data=spec.to_dict(),
        resume=ckpt,
        final_eval_size=final_size,
        clock_start=clock_start,
        progress=progress,
        prepare=spec.prepare,
    )
    barrier()
    summary: dict[str, Any] = {
        "epochs": result.epochs,
        "steps": result.steps,
        "best_epoch": result.best["epoch"],
        # null, not NaN, when there was no validation: results.json stays JSON
        "best_val_accuracy": (
            result.best["accuracy"] if math.isfinite(result.best["accuracy"]) else None
        ),
        "out": str(out),
        "checkpoint": str(result.best_path),
    }
    final_path = result.best_path
    if config.average_epochs:
        final_path = _write_run_average(
            result.last_path, spec, out, config.seed, progress
        )
        summary.update(
            checkpoint=str(final_path),
            averaged_epochs=[result.epochs - config.average_epochs + 1, result.epochs],
        )
    if final_set is not None:
        best = model_from_checkpoint(load_checkpoint(final_path))
        seed_everything(config.seed)
        votes, vote_transform = _voting(config.augment, config.votes)
        res = evaluate(
            best,
            _eval_loader(final_set, config.eval_batch_size or 2 * config.batch_size),
            len(classes),
            votes=votes,
            vote_transform=vote_transform,
            progress=progress and info.is_main,
            desc="test" if test is not None else "validation",
            prepare=spec.prepare,
        )
        summary.update(
            split="test" if test is not None else "val",
            votes=votes,
            **{k: v for k, v in res.to_dict().items()},
        )
        targets, predictions, confidence = _in_dataset_order(res)
        if info.is_main:
            write_predictions(
                out / PREDICTIONS_FILE,
                shape_names(final_set),
                classes,
                targets,
                predictions,
                confidence,
            )
            plot_confusion(
                res.confusion,
                classes,
                out / CONFUSION_FILE,
                title=f"{summary['split']} split",
            )
    summary["elapsed_s"] = elapsed_before(ckpt) + time.perf_counter() - clock_start
    summary["time_budget_s"] = config.time_budget
    if info.is_main:
        write_atomic(out / RESULTS_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _initial_model(path: str, spec: DataSpec, classes: list[str]) -> nn.Module:
    """The model of checkpoint :obj:`path` with its weights, to train further."""
    source = load_checkpoint(path)
    if list(source["classes"]) != classes:
        raise CheckpointError(
            f"{path} was trained on other classes than this dataset's: "
            f"{list(source['classes'])} vs {classes}"
        )
    kwargs = source["model"].get("kwargs", {})
    if kwargs.get("in_channels", spec.in_channels) != spec.in_channels:
        raise CheckpointError(
            f"{path}'s model reads {kwargs['in_channels']} input channels, this "
            f"data gives {spec.in_channels}"
        )
    log.info(
        "starting from %s (%s checkpoint, epoch %s)",
        path,
        source.get("kind"),
        source.get("epoch"),
    )
    return model_from_checkpoint(source).train()


def _write_run_average(
    last: Path, spec: DataSpec, out: Path, seed: int, progress: bool
) -> Path:
    """average.pt from the running mean in :obj:`last`, written by rank 0."""
    from itnet_geo.train.average import average_run

    target = out / AVERAGE_FILE
    if dist_info().is_main:
        average_run(
            last,
            target,
            root=spec.root,
            cache_dir=spec.cache_dir,
            seed=seed,
            progress=progress,
        )
    barrier()
    return target


def _in_dataset_order(res: EvalResult) -> tuple[torch.Tensor, ...]:
    """Targets, predictions and confidences of all processes, in dataset order.

    Under torch.distributed rank ``r`` of ``W`` scored shapes ``r, r + W, ...``
    (the strided shards of the final evaluation).
    """
    parts = gather_objects((res.targets, res.predictions, res.confidence))
    world = len(parts)
    out = []
    for field in range(3):
        pieces = [part[field] for part in parts]
        full = torch.empty(sum(len(p) for p in pieces), dtype=pieces[0].dtype)
        for rank, piece in enumerate(pieces):
            full[rank::world] = piece
        out.append(full)
    return tuple(out)


def _bring_best(path: Path, ckpt: dict[str, Any], out: Path, is_main: bool) -> None:
    """Copy ``best.pt`` next to a relocated ``last.pt`` into the run folder.

    Resuming from a ``last.pt`` outside :obj:`out` (a run moved to another
    machine) needs the run's ``best.pt`` too: it holds the best epoch so far, and
    the final evaluation loads it. It is taken from beside :obj:`path`; without
    it the resume stops now rather than after hours of training.
    """
    target = out / BEST_FILE
    source = path.parent / BEST_FILE
    best_epoch = int(ckpt.get("best", {}).get("epoch", 0))
    if target.is_file() or best_epoch == 0:
        return
    if not source.is_file():
        raise FileNotFoundError(
            f"{path} records a best epoch ({best_epoch}) but neither {target} nor "
            f"{source} exists: put the run's best.pt beside its last.pt"
        )
    found = load_checkpoint(source)
    if found.get("kind") != "best" or int(found.get("epoch", -1)) != best_epoch:
        raise CheckpointError(
            f"{source} is a {found.get('kind')!r} checkpoint of epoch "
            f"{found.get('epoch')}, but {path} records its best epoch as "
            f"{best_epoch}: not the best.pt of the same run"
        )
    if is_main:
        with atomic_open(target, "wb", durable=True) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f)
        log.info("resuming from %s: copied %s to %s", path, source, target)


def checkpoint_spec(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    root: Optional[str | os.PathLike] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    dataset: Optional[str] = None,
) -> DataSpec:
    r"""The data a checkpoint was trained on, read from :obj:`root` if given.

    Raises:
        CheckpointError: The checkpoint (:obj:`path`) records no dataset kind
            and none is given, or no root and none is given.
    """
    options = dict(ckpt.get("data") or {})
    if dataset is not None:
        options["kind"] = dataset
    if "kind" not in options:
        raise CheckpointError(
            f"{path} does not record its dataset kind: pass the dataset"
        )
    overrides: dict[str, Any] = {
        "cache_dir": None if cache_dir is None else str(cache_dir)
    }
    if root is not None:
        overrides["root"] = str(root)
    elif "root" not in options:
        raise CheckpointError(f"{path} does not record a data root: pass one")
    return DataSpec.from_dict(options, **overrides)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike],
    root: Optional[str | os.PathLike] = None,
    split: str = "test",
    votes: int = 1,
    batch_size: int = 32,
    cache_dir: Optional[str | os.PathLike] = None,
    dataset: Optional[str] = None,
    seed: int = 0,
    progress: bool = False,
    predictions: Optional[str | os.PathLike] = None,
    class_weights: Optional[str | os.PathLike | Mapping[str, float]] = None,
) -> EvalResult:
    r"""Score a checkpoint, or an ensemble of them, on the :obj:`split` of :obj:`root`.

    The dataset kind and reading options (points, normals, mesh features …) come
    from the checkpoint. The root's classes are matched to the checkpoint's by
    name, so a root may hold a subset of them, in any order. Several checkpoints
    are scored as an :class:`~itnet_geo.train.Ensemble` (the mean of their class
    probabilities); they must know the same classes and read the data alike, and
    the first one's training augmentation is the one voted over.

    Args:
        checkpoint (str or os.PathLike, or a sequence of them): ``best.pt`` or
            ``last.pt``; several for an ensemble.
        root (str or os.PathLike, optional): Data folder; default the
            training root. (default: :obj:`None`)
        split (str, optional): ``"test"``, ``"train"`` or ``"val"`` (the
            validation split carved from train as in training).
            (default: ``"test"``)
        votes (int, optional): Augmented copies to average. (default: :obj:`1`)
        batch_size (int, optional): Shapes per batch. (default: :obj:`32`)
        cache_dir (str or os.PathLike, optional): Processed-data cache.
            (default: :obj:`None`)
        dataset (str, optional): Dataset kind, for checkpoints that do not
            record one. (default: :obj:`None`)
        seed (int, optional): Seed of the voting augmentation.
            (default: :obj:`0`)
        progress (bool, optional): Progress bar. (default: :obj:`False`)
        predictions (str or os.PathLike, optional): Also write one CSV row per
            shape there (file, true and predicted class, confidence; see
            :func:`~itnet_geo.train.write_predictions`). (default: :obj:`None`)
        class_weights (str, os.PathLike or mapping, optional): Weights by class
            name (or a name or JSON file for
            :func:`~itnet_geo.train.read_class_weights`, e.g.
            ``"modelnet40-test"``): also report the per-class accuracies
            averaged with them as
            :attr:`~itnet_geo.train.EvalResult.weighted_accuracy`. Classes
            without a weight weigh 0. (default: :obj:`None`)

    Raises:
        CheckpointError: Unreadable checkpoint, classes of :obj:`root` that
            the checkpoint does not know, or ensemble members that differ in
            their classes or data.
        ValueError: Class weights naming classes the checkpoint does not know,
            or weighing a class the split has no shape of.
    """
    if split not in ("test", "train", "val"):
        raise ValueError(f"split must be 'test', 'train' or 'val', got {split!r}")
    paths = (
        [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    )
    if not paths:
        raise ValueError("no checkpoint to evaluate")
    if class_weights is not None and not isinstance(class_weights, Mapping):
        class_weights = read_class_weights(class_weights)
    ckpts = [load_checkpoint(p) for p in paths]
    ckpt, checkpoint = ckpts[0], paths[0]
    spec = checkpoint_spec(ckpt, checkpoint, root, cache_dir, dataset)
    if split == "val":
        if spec.val_fraction <= 0:
            raise ValueError("this run carved no validation split from train")
        full = data = build_train_val(spec, progress)[1]
    else:
        full = data = build_split(spec, split, progress)
    names = [str(c) for c in full.classes]
    classes = [str(c) for c in ckpt["classes"]]
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in names if c not in index]
    if unknown:
        raise CheckpointError(
            f"classes of {spec.root} unknown to the checkpoint: "
            f"{some_names(unknown)} (it knows {some_names(classes)})"
        )
    label_map = torch.tensor([index[c] for c in names], dtype=torch.long)
    if class_weights is not None:
        strangers = sorted(set(class_weights) - set(classes))
        if strangers:
            raise ValueError(
                f"class weights for classes the checkpoint does not know: "
                f"{some_names(strangers)}"
            )
        weighed = [c for c in classes if class_weights.get(c, 0) > 0]
        unmeasured = [c for c in weighed if c not in names]
        if unmeasured:
            raise ValueError(
                f"class weights for classes with no shape in the {split} split of "
                f"{spec.root}: {some_names(unmeasured)}"
            )
    model = (
        model_from_checkpoint(ckpt)
        if len(ckpts) == 1
        else ensemble_from_checkpoints(ckpts, paths)
    )
    train_cfg = ckpt.get("train") or {}
    seed_everything(seed)
    votes, vote_transform = _voting(train_cfg.get("augment", ()), votes)
    result = evaluate(
        model,
        DataLoader(data, batch_size=batch_size, shuffle=False),
        len(classes),
        votes=votes,
        vote_transform=vote_transform,
        label_map=label_map,
        progress=progress,
        desc=f"eval {split}",
        prepare=spec.prepare,
    )
    if class_weights is not None:
        weights = torch.tensor([float(class_weights.get(c, 0)) for c in classes])
        result.weighted_accuracy = weighted_accuracy(result.confusion, weights)
    if predictions is not None:
        write_predictions(
            predictions,
            shape_names(data),
            classes,
            result.targets,
            result.predictions,
            result.confidence,
        )
    return result


__all__ = [
    "DEFAULT_MODEL",
    "make_model",
    "load_datasets",
    "train_run",
    "checkpoint_spec",
    "evaluate_checkpoint",
]
