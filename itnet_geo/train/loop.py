r"""The training loop: seeded, resumable, time-budgeted, distributed."""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from itnet_geo._atomic import atomic_open
from itnet_geo.train.budget import budget_reserve, plan_total_steps
from itnet_geo.train.checkpoint import (
    load_checkpoint,
    model_config,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from itnet_geo.train.data import build_augment, vote_augment
from itnet_geo.train.distributed import (
    all_reduce_sum,
    broadcast_object,
    broadcast_tensor,
    dist_info,
    gather_objects,
)
from itnet_geo.train.evaluate import EvalResult, evaluate
from itnet_geo.train.plots import plot_curves
from itnet_geo.train.schedule import WarmupCosine

log = logging.getLogger("itnet_geo.train")

OPTIMIZERS = ("adamw", "sgd")
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CURVES_FILE = "curves.png"
#: Subfolder of a run with the weights kept by ``TrainConfig.keep_epochs``.
EPOCHS_DIR = "epochs"


def epoch_file(epoch: int) -> str:
    r"""The file name of :obj:`epoch`'s weights in :data:`EPOCHS_DIR`."""
    return f"epoch_{epoch:04d}.pt"


# Optimiser steps timed before a time-budgeted run plans its schedule.
_CALIBRATION_STEPS = 6
# Seconds between redraws of curves.png during training.
_PLOT_EVERY = 60.0
# Seconds for the rest of a run's end: loading best.pt, the confusion plot.
_FINAL_EXTRA = 2.0
# Steps whose mean time a time-budgeted run checks its plan against mid-epoch.
_RECENT_STEPS = 16


class NonFiniteLossError(RuntimeError):
    r"""The training loss became NaN or infinite; the run stopped.

    Attributes:
        epoch (int): The epoch (1-based) it happened in.
        step (int): The optimiser step.
        checkpoint (pathlib.Path or None): The last good checkpoint, kept.
    """

    def __init__(self, message: str, epoch: int, step: int, checkpoint: Optional[Path]):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    r"""Hyper-parameters of a training run (stored in every checkpoint).

    Args:
        epochs (int, optional): Epochs to train; with :obj:`time_budget` an upper
            bound (:obj:`None`: none). (default: :obj:`100`)
        batch_size (int, optional): Shapes per step and process. (default: :obj:`32`)
        lr (float, optional): Peak learning rate. (default: :obj:`1e-3`)
        optimizer (str, optional): ``"adamw"`` or ``"sgd"`` (Nesterov momentum).
            (default: ``"adamw"``)
        weight_decay (float, optional): Decoupled weight decay, applied to
            weights only (not to biases and normalisation parameters).
            (default: :obj:`0.05`)
        momentum (float, optional): SGD momentum. (default: :obj:`0.9`)
        warmup_epochs (float, optional): Linear warm-up length, at most a fifth
            of the run. (default: :obj:`1.0`)
        min_lr_ratio (float, optional): Final learning rate over the peak; with
            :obj:`average_epochs`, the constant rate of the averaged epochs.
            (default: :obj:`0.01`)
        label_smoothing (float, optional): Cross-entropy label smoothing.
            (default: :obj:`0.1`)
        grad_clip (float, optional): Gradient-norm clipping. (default: :obj:`None`)
        seed (int, optional): Seeds torch, numpy, python and the data order.
            (default: :obj:`0`)
        augment (tuple[str], optional): Batch augmentation
            (:func:`~itnet_geo.train.data.build_augment`). (default: ``()``)
        votes (int, optional): Votes of the final test evaluation.
            (default: :obj:`1`)
        eval_every (int, optional): Validate every this many epochs (and after
            the last). (default: :obj:`1`)
        time_budget (float, optional): Seconds the whole run may take: epochs
            and schedule are planned to end within it. (default: :obj:`None`)
        num_workers (int, optional): DataLoader workers. (default: :obj:`0`)
        eval_batch_size (int, optional): Evaluation batch size; :obj:`None` for
            twice :obj:`batch_size`. (default: :obj:`None`)
        device (str, optional): ``"cpu"``, ``"cuda"`` or ``"auto"``.
            (default: ``"cpu"``)
        keep_epochs (int, optional): Also keep the weights of the last this many
            epochs, as model-only checkpoints ``epochs/epoch_NNNN.pt`` in the run
            folder, for :func:`~itnet_geo.train.average_checkpoints`.
            (default: :obj:`0`)
        average_epochs (int, optional): Stochastic weight averaging over the
            last this many epochs: the cosine ends where they begin, they train
            at the constant rate ``min_lr_ratio * lr``, and the running mean of
            their weights at each epoch's end is kept in ``last.pt`` (so it
            survives a resume); after training
            :func:`~itnet_geo.train.train_run` writes it to ``average.pt``
            with batch-norm statistics measured again
            (:func:`~itnet_geo.train.average_run`) and scores that instead of
            ``best.pt``. Needs a fixed number of epochs, more than this.
            (default: :obj:`0`)
        init (str, optional): Checkpoint whose model and weights a new run of
            :func:`~itnet_geo.train.train_run` starts from (fine-tuning); kept
            here as the run's record of it. :func:`fit` trains the model it is
            given. (default: :obj:`None`)

    Example:
        >>> config = TrainConfig(epochs=20, lr=2e-3, augment=("scale", "jitter"))
        >>> TrainConfig.from_dict(config.to_dict()) == config
        True
    """

    epochs: Optional[int] = 100
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    grad_clip: Optional[float] = None
    seed: int = 0
    augment: tuple[str, ...] = ()
    votes: int = 1
    eval_every: int = 1
    time_budget: Optional[float] = None
    num_workers: int = 0
    eval_batch_size: Optional[int] = None
    device: str = "cpu"
    keep_epochs: int = 0
    average_epochs: int = 0
    init: Optional[str] = None

    def __post_init__(self) -> None:
        self.augment = tuple(self.augment)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                f"got {self.optimizer!r}"
            )
        if self.epochs is None and self.time_budget is None:
            raise ValueError("give epochs, a time budget, or both")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.votes < 1:
            raise ValueError(f"votes must be at least 1, got {self.votes}")
        if self.keep_epochs < 0:
            raise ValueError(f"keep_epochs must be >= 0, got {self.keep_epochs}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive, got {self.time_budget}")
        if self.average_epochs < 0:
            raise ValueError(f"average_epochs must be >= 0, got {self.average_epochs}")
        if self.average_epochs and self.time_budget is not None:
            raise ValueError(
                "average_epochs needs a fixed number of epochs, not a time budget"
            )
        if self.average_epochs and self.average_epochs >= self.epochs:
            raise ValueError(
                f"average_epochs ({self.average_epochs}) must be fewer than the "
                f"epochs ({self.epochs})"
            )
        build_augment(self.augment)  # fail early on a bad name

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["augment"] = list(self.augment)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in values.items() if k in known}
        merged.update(overrides)
        return cls(**merged)

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class FitResult:
    r"""What :func:`fit` did.

    Attributes:
        best_path (pathlib.Path): ``best.pt`` (model only, smallest file).
        last_path (pathlib.Path): ``last.pt`` (full state, for ``--resume``).
        epochs (int): Epochs completed.
        steps (int): Optimiser steps taken.
        best (dict): ``epoch``, ``accuracy``, ``loss`` of the best validation.
        history (list[dict]): The ``metrics.jsonl`` records.
        elapsed (float): Run clock at the end (seconds, all sessions).
        plan (dict or None): The time-budget plan.
    """

    best_path: Path
    last_path: Path
    epochs: int
    steps: int
    best: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    plan: Optional[dict[str, Any]] = None


def elapsed_before(ckpt: Optional[dict[str, Any]]) -> float:
    r"""Wall time a run had used when :obj:`ckpt` (its ``last.pt``) was written.

    The run clock of a resumed run starts from here, so ``elapsed`` in
    ``metrics.jsonl`` and the summary's ``elapsed_s`` count every session of
    the run. Checkpoints that predate the ``elapsed`` key fall back to the
    time-budget clock or to the last epoch's record.
    """
    if not ckpt:
        return 0.0
    if "elapsed" in ckpt:
        return float(ckpt["elapsed"])
    if ckpt.get("budget"):
        return float(ckpt["budget"].get("used", 0.0))
    history = ckpt.get("history") or []
    return float(history[-1].get("elapsed", 0.0)) if history else 0.0


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    r"""AdamW or SGD (Nesterov) over :obj:`model`, no decay on 1-D parameters."""
    groups = _param_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=True
    )


def mixed_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    label_smoothing: float = 0.0,
    partner: Optional[torch.Tensor] = None,
    lam: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    r"""Cross-entropy of a batch, of a mixed batch when :obj:`partner` is given.

    .. math::
        \ell = \frac1B \sum_a (1 - \lambda_a)\,
            \mathrm{CE}(z_a, y_a) + \lambda_a\, \mathrm{CE}(z_a, y_{b(a)})

    for clouds mixed by :class:`~itnet_geo.transforms.PointCutMix` (a share
    :math:`\lambda_a` of cloud :math:`a`'s points from cloud :math:`b(a)`,
    the batch's ``mix_lambda`` and ``mix_partner``); plain cross-entropy
    without them. Label smoothing applies to both terms.
    """
    if partner is None or lam is None:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    own = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="none")
    other = F.cross_entropy(
        logits, y[partner], label_smoothing=label_smoothing, reduction="none"
    )
    lam = lam.to(own.dtype)
    return ((1 - lam) * own + lam * other).mean()


def _shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    if world_size <= 1:
        return dataset
    return dataset.index_select(list(range(rank, len(dataset), world_size)))


class _FileLog:
    """Adds ``train.log`` in the run folder to the ``itnet_geo.train`` logger.

    Nothing is added (or removed on :meth:`close`) when a handler of that file
    is already attached: :func:`~itnet_geo.train.train_run` opens the log before
    it reads the data, then :func:`fit` finds it open.
    """

    def __init__(self, path: Optional[Path]):
        self.handler: Optional[logging.Handler] = None
        attached = {getattr(h, "baseFilename", None) for h in log.handlers}
        if path is not None and os.path.abspath(path) not in attached:
            self.handler = logging.FileHandler(path, mode="a", encoding="utf-8")
            self.handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(message)s")
            )
            log.addHandler(self.handler)
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)

    def close(self) -> None:
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()


class _Trainer:
    """State of one :func:`fit` call; see :func:`fit` for the contract."""

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Optional[Dataset],
        config: TrainConfig,
        out_dir: Path,
        classes: Sequence[str],
        data: Optional[dict[str, Any]],
        final_eval_size: int,
        clock_start: float,
        progress: bool,
        callback: Optional[Callable[[dict[str, Any]], None]],
        prepare: Optional[Callable[[Any], Any]],
    ):
        self.dist = dist_info()
        self.prepare = prepare
        self.config = config
        self.out_dir = out_dir
        self.classes = list(classes)
        self.data = dict(data or {})
        self.final_eval_size = final_eval_size
        self.clock_start = clock_start
        self.progress = progress and self.dist.is_main
        self.callback = callback
        self.device = config.resolve_device()
        self.net = model.to(self.device)
        self.model_cfg = model_config(self.net)
        self.num_classes = len(self.classes)
        self.augment = build_augment(config.augment)
        self.vote_transform = build_augment(vote_augment(config.augment))

        self.generator = torch.Generator().manual_seed(config.seed)
        train_size = len(train_set) // max(self.dist.world_size, 1)
        drop_last = train_size > config.batch_size
        if self.dist.enabled:
            from torch.utils.data.distributed import DistributedSampler

            self.sampler = DistributedSampler(
                train_set,
                num_replicas=self.dist.world_size,
                rank=self.dist.rank,
                shuffle=True,
                seed=config.seed,
                drop_last=True,
            )
            self.loader = DataLoader(
                train_set,
                batch_size=config.batch_size,
                sampler=self.sampler,
                drop_last=drop_last,
                num_workers=config.num_workers,
            )
        else:
            self.sampler = None
            self.loader = DataLoader(
                train_set,
                batch_size=config.batch_size,
                shuffle=True,
                drop_last=drop_last,
                generator=self.generator,
                num_workers=config.num_workers,
            )
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set is empty ({len(train_set)} shapes)")
        self.val_loader = None
        if val_set is not None and len(val_set) > 0:
            self.val_loader = DataLoader(
                _shard(val_set, self.dist.rank, self.dist.world_size),
                batch_size=config.eval_batch_size or 2 * config.batch_size,
                shuffle=False,
                num_workers=config.num_workers,
            )
        self.val_size = 0 if val_set is None else len(val_set)
        self.optimizer = make_optimizer(self.net, config)
        self.schedule: Optional[WarmupCosine] = None
        self.model: nn.Module = self.net
        self.epoch = 0
        self.step = 0
        self.best: dict[str, Any] = {"epoch": 0, "accuracy": -1.0, "loss": math.inf}
        self.history: list[dict[str, Any]] = []
        self.elapsed_before = 0.0
        self.plan: Optional[dict[str, Any]] = None
        self.total_steps = 0
        self.best_path = out_dir / BEST_FILE
        self.last_path = out_dir / LAST_FILE
        # average_epochs: running mean of the weights at the averaged epochs' ends
        self.average: Optional[dict[str, torch.Tensor]] = None
        self.averaged_epochs: list[int] = []
        self.step_times: list[float] = []
        self.overhead_times: list[float] = []
        self.last_plot = time.perf_counter()

    # -- clock, schedule, plan -------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.clock_start)

    def _warmup(self, total: int) -> int:
        steps = int(round(self.config.warmup_epochs * self.steps_per_epoch))
        return max(0, min(steps, total // 5))

    def _start_fresh(self) -> None:
        seed_everything(self.config.seed + self.dist.rank)
        if self.config.time_budget is not None:
            self._plan_budget()
        else:
            self.total_steps = self.config.epochs * self.steps_per_epoch
        # Averaged epochs train at the cosine's final rate, after it.
        cosine_steps = self.total_steps - self.config.average_epochs * (
            self.steps_per_epoch
        )
        self.schedule = WarmupCosine(
            self.config.lr,
            cosine_steps,
            self._warmup(cosine_steps),
            self.config.min_lr_ratio,
        )

    def _max_steps(self) -> Optional[int]:
        if self.config.epochs is None:
            return None
        return self.config.epochs * self.steps_per_epoch

    def _plan_budget(self) -> None:
        timing = self._calibrate()
        budget = float(self.config.time_budget)
        remaining = budget - budget_reserve(budget) - self.elapsed()
        total = plan_total_steps(
            remaining,
            0,
            self.steps_per_epoch,
            timing["step_time"],
            timing["epoch_overhead"],
            timing["final_time"],
            self._max_steps(),
        )
        total = broadcast_object(total)
        if total < 1:
            raise ValueError(
                f"the time budget of {budget:.0f} s is too small: one training step "
                f"takes {timing['step_time']:.2f} s and an epoch's evaluation and "
                f"checkpoints {timing['epoch_overhead']:.1f} s, with "
                f"{self.elapsed():.0f} s already used"
            )
        self.total_steps = total
        self.plan = {
            "budget": budget,
            "reserve": budget_reserve(budget),
            "total_steps": total,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": math.ceil(total / self.steps_per_epoch),
            "initial_total_steps": total,
            "replans": 0,
            **{k: float(v) for k, v in timing.items()},
        }
        log.info(
            "time budget %.0f s: %.3f s/step, %.1f s per epoch end, %.1f s final "
            "evaluation -> %d steps (%d epochs of %d steps)",
            budget,
            timing["step_time"],
            timing["epoch_overhead"],
            timing["final_time"],
            total,
            self.plan["epochs"],
            self.steps_per_epoch,
        )

    def _calibrate(self) -> dict[str, float]:
        r"""Time a few real steps, an evaluation and a checkpoint; undo the steps."""
        t_start = time.perf_counter()
        saved_model = copy.deepcopy(self.net.state_dict())
        saved_opt = copy.deepcopy(self.optimizer.state_dict())
        saved_rng = rng_state(self.generator)
        self.net.train()
        times = []
        iterator = iter(self.loader)
        for _ in range(min(_CALIBRATION_STEPS, self.steps_per_epoch)):
            t0 = time.perf_counter()
            batch = next(iterator)
            self._train_step(batch, lr=self.config.lr, check=False)
            times.append(time.perf_counter() - t0)
        del iterator
        step_time = statistics.median(times[1:] if len(times) > 1 else times)
        # Evaluation cost per shape, from at most two batches.
        eval_loader = self.val_loader if self.val_loader is not None else self.loader
        t0 = time.perf_counter()
        seen = 0
        with torch.no_grad():
            self.net.eval()
            for i, batch in enumerate(eval_loader):
                if i >= 2:
                    break
                batch = batch.to(self.device)
                self.net(batch if self.prepare is None else self.prepare(batch))
                seen += int(batch.num_graphs)
            self.net.train()
        per_shape = (time.perf_counter() - t0) / max(seen, 1)
        # One checkpoint write (of the larger, "last" kind).
        t0 = time.perf_counter()
        if self.dist.is_main:
            probe = self.out_dir / ".calibration.pt"
            save_checkpoint(probe, self._payload("last", None))
            probe.unlink()
        ckpt_time = time.perf_counter() - t0
        self.net.load_state_dict(saved_model)
        self.optimizer.load_state_dict(saved_opt)
        set_rng_state(saved_rng, self.generator)
        eval_time = per_shape * self.val_size / max(self.dist.world_size, 1)
        timing = {
            "step_time": step_time,
            "eval_time": eval_time,
            "ckpt_time": ckpt_time,
            # validation + last.pt + best.pt + a share of the plots, per epoch
            "epoch_overhead": eval_time + 2 * ckpt_time + 0.5,
            "final_time": per_shape * self.final_eval_size / self.dist.world_size
            + ckpt_time
            + _FINAL_EXTRA,
            "calibration_time": time.perf_counter() - t_start,
        }
        return broadcast_object(timing)

    def _replan(
        self,
        train_time: float,
        steps_in_epoch: int,
        overhead: float,
        val_time: Optional[float],
    ) -> None:
        if self.plan is None or steps_in_epoch == 0:
            return
        self.step_times.append(train_time / steps_in_epoch)
        self.overhead_times.append(overhead)
        step_time = statistics.mean(self.step_times[-2:])
        epoch_overhead = self.overhead_times[-1]
        if val_time is not None and self.val_size > 0:
            # The final evaluation, at the evaluation speed just measured.
            per_shape = val_time * self.dist.world_size / self.val_size
            self.plan["final_time"] = (
                per_shape * self.final_eval_size / self.dist.world_size
                + self.plan["ckpt_time"]
                + _FINAL_EXTRA
            )
        budget = self.plan["budget"]
        remaining = budget - self.plan["reserve"] - self.elapsed()
        total = plan_total_steps(
            remaining,
            self.step,
            self.steps_per_epoch,
            step_time,
            epoch_overhead,
            self.plan["final_time"],
            self._max_steps(),
        )
        total = broadcast_object(total)
        old = self.total_steps
        if total == old or (old < total <= old * 1.01):
            return
        if self.step >= old:
            return  # the planned schedule is complete
        self.schedule.retarget(self.step, max(total, self.step))
        self.total_steps = max(total, self.step)
        self.plan.update(
            total_steps=self.total_steps,
            epochs=math.ceil(self.total_steps / self.steps_per_epoch),
            step_time=step_time,
            epoch_overhead=epoch_overhead,
            replans=self.plan["replans"] + 1,
        )
        if total <= self.step:
            log.warning(
                "time budget: no time left for another epoch; the schedule ends at "
                "step %d instead of %d",
                self.step,
                old,
            )
        else:
            log.info(
                "time budget: re-planned from %d to %d steps (%.3f s/step, %.1f s per "
                "epoch end, %.0f s left)",
                old,
                total,
                step_time,
                epoch_overhead,
                remaining,
            )

    def _shrink_if_late(self, step_time: float) -> None:
        r"""In the last two epochs: if the plan no longer fits, shorten it.

        Earlier, epoch-end re-planning (from whole-epoch timings) corrects the
        plan; reacting to a few slow steps there would only chase noise.
        """
        if self.step >= self.total_steps:
            return
        epoch_end = (self.step // self.steps_per_epoch + 1) * self.steps_per_epoch
        if self.total_steps > epoch_end + self.steps_per_epoch:
            return
        overhead = (
            self.overhead_times[-1]
            if self.overhead_times
            else self.plan["epoch_overhead"]
        )
        remaining = self.plan["budget"] - self.plan["reserve"] - self.elapsed()
        total = plan_total_steps(
            remaining,
            self.step,
            self.steps_per_epoch,
            step_time,
            overhead,
            self.plan["final_time"],
            self._max_steps(),
        )
        total = int(broadcast_object(total))
        if total >= self.total_steps:
            return
        old = self.total_steps
        self.total_steps = max(total, self.step + 1)
        self.schedule.retarget(self.step, self.total_steps)
        self.plan.update(
            total_steps=self.total_steps,
            epochs=math.ceil(self.total_steps / self.steps_per_epoch),
            replans=self.plan["replans"] + 1,
        )
        log.info(
            "time budget: steps slowed to %.3f s; re-planned from %d to %d steps "
            "(%.0f s left)",
            step_time,
            old,
            self.total_steps,
            remaining,
        )

    # -- checkpoints -------------------------------------------------------------------

    def _payload(self, kind: str, record: Optional[dict[str, Any]]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "kind": kind,
            "model": self.model_cfg,
            "state_dict": self.net.state_dict(),
            "classes": self.classes,
            "data": self.data,
            "train": self.config.to_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "metrics": record,
            "best": dict(self.best),
            "torch_version": str(torch.__version__),
        }
        if kind == "last":
            payload.update(
                optimizer=self.optimizer.state_dict(),
                schedule=None if self.schedule is None else self.schedule.state_dict(),
                total_steps=self.total_steps,
                steps_per_epoch=self.steps_per_epoch,
                budget=None if self.plan is None else dict(self.plan),
                world_size=self.dist.world_size,
                history=list(self.history),
                elapsed=self.elapsed(),
                average=(
                    None
                    if self.average is None
                    else {"state_dict": self.average, "epochs": self.averaged_epochs}
                ),
            )
        return payload

    def _save(self, record: dict[str, Any], improved: bool) -> float:
        t0 = time.perf_counter()
        if not all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            raise NonFiniteLossError(
                f"parameters became non-finite in epoch {self.epoch}; stopped "
                f"without overwriting {self.last_path}",
                self.epoch,
                self.step,
                self.last_path if self.last_path.exists() else None,
            )
        rngs = gather_objects(rng_state(self.generator))
        if self.dist.is_main:
            # The epoch's weights first: a run killed before last.pt is written
            # redoes this epoch and writes the same file again.
            self._keep_epoch(record)
            payload = self._payload("last", record)
            payload["rng"] = rngs
            save_checkpoint(self.last_path, payload)
            if improved:
                save_checkpoint(self.best_path, self._payload("best", record))
        return time.perf_counter() - t0

    def _keep_epoch(self, record: dict[str, Any]) -> None:
        keep = self.config.keep_epochs
        if keep <= 0:
            return
        folder = self.out_dir / EPOCHS_DIR
        folder.mkdir(exist_ok=True)
        path = folder / epoch_file(self.epoch)
        save_checkpoint(path, self._payload("epoch", record))
        for old in folder.glob("epoch_*.pt"):
            number = old.stem.removeprefix("epoch_")
            if number.isdigit() and int(number) <= self.epoch - keep:
                old.unlink()

    def _resume(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("kind") != "last" or "optimizer" not in ckpt:
            raise ValueError(
                "resume needs a last.pt checkpoint (with the optimiser state); "
                f"this one is a {ckpt.get('kind')!r} checkpoint"
            )
        if ckpt["model"] != self.model_cfg:
            raise ValueError(
                f"the checkpoint's model {ckpt['model']} differs from the model given "
                f"{self.model_cfg}"
            )
        if list(ckpt["classes"]) != self.classes:
            raise ValueError("the checkpoint's classes differ from the dataset's")
        if int(ckpt.get("steps_per_epoch", -1)) != self.steps_per_epoch:
            written_by = int(ckpt.get("world_size", 1))
            hint = (
                f" (it was written by {written_by} processes, this run has "
                f"{self.dist.world_size}: resume with --nproc {written_by})"
                if written_by != self.dist.world_size
                else ""
            )
            raise ValueError(
                f"the checkpoint has {ckpt.get('steps_per_epoch')} steps per epoch, "
                f"this run {self.steps_per_epoch}: same data, batch size and number "
                f"of processes are needed to resume{hint}"
            )
        self.net.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["epoch"])
        self.step = int(ckpt["step"])
        self.total_steps = int(ckpt["total_steps"])
        self.best = dict(ckpt["best"])
        self.history = [dict(h) for h in ckpt.get("history", [])]
        average = ckpt.get("average")
        if average is not None:
            self.average = {
                k: v.to(self.device) for k, v in average["state_dict"].items()
            }
            self.averaged_epochs = [int(e) for e in average["epochs"]]
        self.schedule = WarmupCosine(self.config.lr, max(self.total_steps, 1))
        self.schedule.load_state_dict(ckpt["schedule"])
        budget = ckpt.get("budget")
        if budget is not None:
            # Files written before the "elapsed" key also hold "used" here.
            self.plan = {k: v for k, v in budget.items() if k != "used"}
        self.elapsed_before = elapsed_before(ckpt)
        rngs = ckpt.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank], self.generator)
        elif rngs:
            log.warning(
                "checkpoint written by %d processes, resumed by %d: random streams "
                "re-seeded, so the run will not repeat exactly",
                len(rngs),
                self.dist.world_size,
            )
            set_rng_state(rngs[0], self.generator)
            seed_everything(self.config.seed + 1000 * self.epoch + self.dist.rank)
        log.info(
            "resumed at epoch %d, step %d of %d",
            self.epoch,
            self.step,
            self.total_steps,
        )

    # -- steps and epochs --------------------------------------------------------------

    def _train_step(self, batch: Any, lr: float, check: bool = True):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = batch.to(self.device)
        if self.augment is not None:
            batch = self.augment(batch)
        if self.prepare is not None:
            batch = self.prepare(batch)
        y = batch.y.view(-1)
        logits = self.model(batch)
        loss = mixed_cross_entropy(
            logits.float(),
            y,
            self.config.label_smoothing,
            getattr(batch, "mix_partner", None),
            getattr(batch, "mix_lambda", None),
        )
        if check:
            bad = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0])
            if float(all_reduce_sum(bad)) > 0:
                return None, logits, y
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss.detach(), logits.detach(), y

    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        steps = 0
        lr = self.schedule.lr(self.step)
        t0 = time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {self.epoch + 1}/{epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=not self.progress,
        )
        recent: collections.deque[float] = collections.deque(maxlen=_RECENT_STEPS + 1)
        recent.append(t0)
        check_every = max(1, self.steps_per_epoch // 10)
        for batch in bar:
            if self.step >= self.total_steps:
                break
            lr = self.schedule.lr(self.step)
            loss, logits, y = self._train_step(batch, lr)
            if loss is None:
                bar.close()
                last = self.last_path if self.last_path.exists() else None
                kept = f"last good checkpoint kept: {last}" if last else "no checkpoint"
                raise NonFiniteLossError(
                    f"training loss became non-finite at epoch {self.epoch + 1}, step "
                    f"{self.step + 1}; stopped ({kept}, epoch {self.epoch})",
                    self.epoch + 1,
                    self.step + 1,
                    last,
                )
            self.step += 1
            steps += 1
            recent.append(time.perf_counter())
            if self.plan is not None and steps % check_every == 0:
                self._shrink_if_late((recent[-1] - recent[0]) / (len(recent) - 1))
            n = y.numel()
            sums += torch.tensor(
                [float(loss) * n, float((logits.argmax(-1) == y).sum()), n],
                dtype=torch.float64,
            )
            if self.progress and steps % 5 == 0:
                bar.set_postfix(
                    loss=f"{sums[0] / sums[2]:.3f}",
                    acc=f"{100 * sums[1] / sums[2]:.1f}%",
                    lr=f"{lr:.2e}",
                )
        bar.close()
        train_time = time.perf_counter() - t0
        all_reduce_sum(sums)
        n = max(float(sums[2]), 1.0)
        return {
            "lr": lr,
            "train_loss": float(sums[0]) / n,
            "train_acc": float(sums[1]) / n,
            "train_time": train_time,
            "steps": steps,
            "clouds_per_s": float(sums[2]) / max(train_time, 1e-9),
        }

    def _update_average(self) -> None:
        # A running mean over the averaged epochs (the last average_epochs).
        first = (self.config.epochs or 0) - self.config.average_epochs + 1
        if not self.config.average_epochs or self.epoch < first:
            return
        state = self.net.state_dict()
        self.averaged_epochs.append(self.epoch)
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in state.items()}
            return
        n = len(self.averaged_epochs)
        with torch.no_grad():
            for key, value in state.items():
                mean = self.average[key]
                if mean.is_floating_point():
                    value = value.detach().to(mean.device, mean.dtype)
                    mean.add_(value.sub(mean), alpha=1.0 / n)
                else:
                    mean.copy_(value)

    def _sync_buffers(self) -> None:
        # DDP syncs buffers (BatchNorm statistics) at the start of each forward
        # only: average them over ranks so validation and checkpoints agree.
        if not self.dist.enabled:
            return
        for buf in self.net.buffers():
            if buf.is_floating_point():
                all_reduce_sum(buf)
                buf.div_(self.dist.world_size)
            else:
                broadcast_tensor(buf)

    def _validate(self, last: bool) -> Optional[EvalResult]:
        if self.val_loader is None:
            return None
        if not (last or self.epoch % self.config.eval_every == 0):
            return None
        return evaluate(
            self.model,
            self.val_loader,
            self.num_classes,
            device=self.device,
            progress=self.progress,
            desc="validation",
            prepare=self.prepare,
        )

    def _plot(self, final: bool) -> None:
        # Redrawn at most every _PLOT_EVERY seconds (a plot costs about a second).
        now = time.perf_counter()
        if final or now - self.last_plot >= _PLOT_EVERY:
            plot_curves(self.history, self.out_dir / CURVES_FILE)
            self.last_plot = time.perf_counter()

    def _write_metrics(self) -> None:
        with atomic_open(self.out_dir / METRICS_FILE, "w", encoding="utf-8") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def run(self, resume: Optional[dict[str, Any]]) -> FitResult:
        if resume is not None:
            self._resume(resume)
        else:
            self._start_fresh()
        if self.dist.is_main:
            self._write_metrics()  # drops lines of epochs a killed run did not save
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)
        while self.step < self.total_steps:
            t_epoch = time.perf_counter()
            stats = self._train_epoch()
            self._sync_buffers()
            self.epoch += 1
            self._update_average()
            last_epoch = self.step >= self.total_steps
            t_val = time.perf_counter()
            val = self._validate(last_epoch)
            val_time = time.perf_counter() - t_val
            improved = False
            if val is not None:
                key = (val.accuracy, -val.loss)
                if key > (self.best["accuracy"], -self.best["loss"]):
                    improved = True
            elif self.val_loader is None:
                improved = True  # no validation: the latest is the best
            if improved:
                self.best = {
                    "epoch": self.epoch,
                    "accuracy": val.accuracy if val is not None else float("nan"),
                    "loss": val.loss if val is not None else float("nan"),
                }
            record = {
                "epoch": self.epoch,
                "step": self.step,
                "lr": stats["lr"],
                "train_loss": stats["train_loss"],
                "train_acc": stats["train_acc"],
                "val_loss": None if val is None else val.loss,
                "val_acc": None if val is None else val.accuracy,
                "val_class_acc": None if val is None else val.class_accuracy,
                "best_epoch": self.best["epoch"],
                "train_time": stats["train_time"],
                "val_time": val_time,
                "clouds_per_s": stats["clouds_per_s"],
                "elapsed": self.elapsed(),
            }
            overhead_so_far = time.perf_counter() - t_epoch - stats["train_time"]
            est_tail = self.plan["ckpt_time"] * 2 + 0.5 if self.plan else 0.0
            self._replan(
                stats["train_time"],
                stats["steps"],
                overhead_so_far + est_tail,
                val_time if val is not None else None,
            )
            record["planned_steps"] = self.total_steps
            self.history.append(record)
            if self.dist.is_main:
                self._append_metrics(record)
            ckpt_time = self._save(record, improved)
            if self.plan is not None:
                self.plan["ckpt_time"] = max(ckpt_time / (2 if improved else 1), 1e-3)
            if self.dist.is_main:
                self._plot(final=self.step >= self.total_steps)
                val_text = (
                    ""
                    if val is None
                    else f"  val {100 * val.accuracy:.1f}% "
                    f"(class {100 * val.class_accuracy:.1f}%) loss {val.loss:.3f}"
                )
                log.info(
                    "epoch %d/%d  loss %.3f  acc %.1f%%%s  lr %.2e  %.1f clouds/s  "
                    "%.1f s",
                    self.epoch,
                    math.ceil(self.total_steps / self.steps_per_epoch),
                    stats["train_loss"],
                    100 * stats["train_acc"],
                    val_text,
                    stats["lr"],
                    stats["clouds_per_s"],
                    time.perf_counter() - t_epoch,
                )
            if self.callback is not None:
                self.callback(record)
        return FitResult(
            best_path=self.best_path,
            last_path=self.last_path,
            epochs=self.epoch,
            steps=self.step,
            best=dict(self.best),
            history=list(self.history),
            elapsed=self.elapsed(),
            plan=None if self.plan is None else dict(self.plan),
        )


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Optional[Dataset],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    classes: Sequence[str],
    data: Optional[dict[str, Any]] = None,
    resume: Optional[str | os.PathLike | dict[str, Any]] = None,
    final_eval_size: int = 0,
    clock_start: Optional[float] = None,
    progress: bool = True,
    callback: Optional[Callable[[dict[str, Any]], None]] = None,
    prepare: Optional[Callable[[Any], Any]] = None,
) -> FitResult:
    r"""Train :obj:`model` on :obj:`train_set`, validating on :obj:`val_set`.

    Cross-entropy with label smoothing, AdamW or SGD, linear warm-up then cosine
    decay per step (:class:`~itnet_geo.train.WarmupCosine`), batch augmentation
    from :attr:`TrainConfig.augment`. After every epoch: validation, one line
    appended to ``<out_dir>/metrics.jsonl``, ``last.pt`` (full state) and — when
    validation accuracy improved — ``best.pt`` (model only) written atomically,
    ``curves.png`` redrawn, progress logged to ``train.log``.

    **Resuming** from ``last.pt`` restores the model, optimiser, schedule, epoch,
    step, best score, history, time-budget plan and the torch / numpy / python /
    data-order random states of every process, so a run killed after epoch
    :math:`k` and resumed ends with the same parameters as one never stopped.

    **Time budget** (:attr:`TrainConfig.time_budget`): before the first epoch a
    few steps, an evaluation and a checkpoint write are timed (and undone); the
    total number of steps is then planned (:func:`~itnet_geo.train.plan_total_steps`)
    so training, per-epoch validation and checkpoints and the final evaluation of
    :obj:`final_eval_size` shapes end within the budget, counted from
    :obj:`clock_start`. The cosine schedule is laid over exactly those steps (the
    last epoch may be partial) and re-planned after each epoch from measured
    times, continuously, so it always finishes.

    **NaN**: a non-finite loss stops the run before the optimiser step with
    :class:`NonFiniteLossError`; ``last.pt`` / ``best.pt`` of the last good epoch
    are left as they were.

    **Distributed**: under ``torchrun`` (after
    :func:`~itnet_geo.train.init_distributed`) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`, each rank reads its
    :class:`~torch.utils.data.distributed.DistributedSampler` share, validation
    counts are summed over ranks, and only rank 0 writes files.

    Args:
        model (torch.nn.Module): Maps a PyG batch to ``(B, K)`` logits; needs
            ``name`` and ``config`` attributes (models of
            :mod:`itnet_geo.nn.models` have them) to be checkpointed.
        train_set (Dataset): Training shapes with ``y``.
        val_set (Dataset, optional): Validation shapes, or :obj:`None`.
        config (TrainConfig): Hyper-parameters.
        out_dir (str or os.PathLike): Run folder (created).
        classes (list[str]): Class names, ``classes[y]``.
        data (dict, optional): Dataset description stored in checkpoints
            (:meth:`DataSpec.to_dict`). (default: :obj:`None`)
        resume (str, os.PathLike or dict, optional): ``last.pt`` (or its loaded
            dict) to continue from. (default: :obj:`None`)
        final_eval_size (int, optional): Shape-evaluations (test shapes times
            votes) the caller runs after :func:`fit`, reserved in the time
            budget. (default: :obj:`0`)
        clock_start (float, optional): :func:`time.perf_counter` value the
            budget is counted from. (default: now)
        progress (bool, optional): tqdm progress bars. (default: :obj:`True`)
        callback (callable, optional): Called with each epoch's record after its
            checkpoint is written. (default: :obj:`None`)
        prepare (callable, optional): Applied to each batch after augmentation,
            right before the model (e.g. :meth:`DataSpec.prepare`).
            (default: :obj:`None`)

    Returns:
        FitResult: Paths, epochs, steps, best validation and history.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.

    Example:
        .. code-block:: python

            train, val = carve_split(SyntheticShapes(root, "train"), 0.1)
            model = ITNetClassifier.from_preset("cpu-1h", num_classes=10)
            result = fit(model, train, val, TrainConfig(time_budget=600.0),
                         "runs/example", classes=train.classes)
            best = model_from_checkpoint(load_checkpoint(result.best_path))
    """
    clock_start = time.perf_counter() if clock_start is None else clock_start
    out = Path(out_dir)
    info = dist_info()
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if isinstance(resume, (str, os.PathLike)):
        resume = load_checkpoint(resume)
    file_log = _FileLog(out / LOG_FILE if info.is_main else None)
    try:
        trainer = _Trainer(
            model,
            train_set,
            val_set,
            config,
            out,
            classes,
            data,
            final_eval_size,
            clock_start,
            progress,
            callback,
            prepare,
        )
        return trainer.run(resume)
    finally:
        file_log.close()


__all__ = [
    "TrainConfig",
    "FitResult",
    "NonFiniteLossError",
    "fit",
    "make_optimizer",
    "mixed_cross_entropy",
]
