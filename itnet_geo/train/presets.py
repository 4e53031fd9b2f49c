r"""Named training set-ups: a model preset plus training hyper-parameters.

``itnet-geo train --preset NAME`` starts from these values; flags given on the
command line override them.
"""

from __future__ import annotations

from typing import Any

#: Training presets. ``model_preset`` names an entry of
#: :data:`itnet_geo.nn.models.PRESETS`, ``model_options`` are constructor
#: options of the model (over the preset's); the other keys are
#: :class:`~itnet_geo.train.TrainConfig` fields, ``num_points`` (points per shape)
#: and ``time_budget`` (a duration such as ``"1h"``).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # One CPU-hour on ModelNet40 (xyz, 1024 points, 2 threads): the fastest
    # model preset, a time-budgeted warm-up + cosine schedule, AdamW.
    "cpu-1h": {
        "model_preset": "cpu-1h",
        "time_budget": "1h",
        "num_points": 1024,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.2,
        "warmup_epochs": 1.0,
        "min_lr_ratio": 0.01,
        "optimizer": "adamw",
        "augment": ["scale", "jitter:0.005:0.02"],
    },
    # The 5-minute demo on SyntheticShapes (``itnet-geo demo``): a small, fast
    # ITNetClassifier (about 0.15 M parameters) and a 4-minute budget.
    "demo": {
        "model_options": {
            "embed_channels": 16,
            "channels": [32, 64, 128],
            "ratios": [0.25, 0.25, 0.25],
            "k": [16, 12, 12],
            "depth": [0, 0, 0],
            "hidden": 8,
            "heads": 4,
            "head_channels": [128],
        },
        "time_budget": "4m",
        "num_points": 512,
        "batch_size": 16,
        "lr": 3e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "warmup_epochs": 0.5,
        "min_lr_ratio": 0.02,
        "optimizer": "adamw",
        "augment": ["rotate-z", "scale:0.8:1.25", "jitter"],
    },
}

__all__ = ["TRAIN_PRESETS"]
