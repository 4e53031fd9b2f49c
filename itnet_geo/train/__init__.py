r"""Training, evaluation, checkpoints and plots for itnet_geo models.

:func:`fit` is the loop (seeded, resumable, time-budgeted, DDP-ready),
:func:`evaluate` scores a model (with voting), :func:`train_run` and
:func:`evaluate_checkpoint` are what ``itnet-geo train`` / ``eval`` run (an
:class:`Ensemble` when ``eval`` is given several checkpoints),
:func:`average_checkpoints` what ``itnet-geo average`` runs,
:func:`pack_ensemble` what ``itnet-geo ensemble`` runs,
:func:`compare_runs` what ``itnet-geo compare`` runs.
"""

from itnet_geo.train.average import (
    average_checkpoints,
    average_run,
    average_state_dicts,
    recalibrate_batchnorm,
)
from itnet_geo.train.budget import budget_reserve, parse_duration, plan_total_steps
from itnet_geo.train.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    model_config,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from itnet_geo.train.compare import compare_runs, load_history, summarize
from itnet_geo.train.data import (
    DATASET_KINDS,
    DEFAULT_AUGMENT,
    DataSpec,
    build_augment,
    build_split,
    build_train_val,
    carve_split,
    default_data_root,
    labels_of,
    shape_names,
    vote_augment,
)
from itnet_geo.train.distributed import (
    DistInfo,
    cleanup_distributed,
    dist_info,
    init_distributed,
)
from itnet_geo.train.ensemble import (
    Ensemble,
    ensemble_from_checkpoints,
    pack_ensemble,
)
from itnet_geo.train.evaluate import (
    NAMED_CLASS_WEIGHTS,
    EvalResult,
    evaluate,
    read_class_weights,
    write_predictions,
)
from itnet_geo.train.loop import (
    FitResult,
    NonFiniteLossError,
    TrainConfig,
    fit,
    make_optimizer,
    mixed_cross_entropy,
)
from itnet_geo.train.metrics import (
    class_accuracy,
    confusion_matrix,
    overall_accuracy,
    weighted_accuracy,
)
from itnet_geo.train.plots import plot_confusion, plot_curves
from itnet_geo.train.presets import TRAIN_PRESETS
from itnet_geo.train.run import (
    DEFAULT_MODEL,
    evaluate_checkpoint,
    load_datasets,
    make_model,
    train_run,
)
from itnet_geo.train.schedule import WarmupCosine

__all__ = [
    "fit",
    "TrainConfig",
    "FitResult",
    "NonFiniteLossError",
    "make_optimizer",
    "mixed_cross_entropy",
    "evaluate",
    "EvalResult",
    "write_predictions",
    "read_class_weights",
    "NAMED_CLASS_WEIGHTS",
    "confusion_matrix",
    "overall_accuracy",
    "weighted_accuracy",
    "class_accuracy",
    "WarmupCosine",
    "parse_duration",
    "plan_total_steps",
    "budget_reserve",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "model_config",
    "build_model",
    "model_from_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "plot_curves",
    "plot_confusion",
    "compare_runs",
    "load_history",
    "summarize",
    "DataSpec",
    "DATASET_KINDS",
    "DEFAULT_AUGMENT",
    "build_split",
    "build_train_val",
    "carve_split",
    "labels_of",
    "shape_names",
    "build_augment",
    "vote_augment",
    "default_data_root",
    "DistInfo",
    "init_distributed",
    "dist_info",
    "cleanup_distributed",
    "TRAIN_PRESETS",
    "DEFAULT_MODEL",
    "make_model",
    "load_datasets",
    "train_run",
    "evaluate_checkpoint",
    "Ensemble",
    "pack_ensemble",
    "ensemble_from_checkpoints",
    "average_checkpoints",
    "average_run",
    "average_state_dicts",
    "recalibrate_batchnorm",
]
