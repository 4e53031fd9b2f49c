"""The shipped checkpoints load, rebuild their model and evaluate."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from itnet_geo.nn.models import build_model

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
CHECKPOINTS = sorted(CHECKPOINT_DIR.glob("*.pt"))
HISTORIES = sorted(CHECKPOINT_DIR.glob("*.metrics.jsonl"))


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_checkpoint_loads_with_weights_only_and_rebuilds(path):
    assert path.stat().st_size <= 20 * 2**20
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "itnet_geo.checkpoint"
    model = build_model(ckpt["model"]["name"], **ckpt["model"]["kwargs"])
    model.load_state_dict(ckpt["state_dict"])  # strict: every key matches
    assert len(ckpt["classes"]) == model.config["num_classes"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.name for p in HISTORIES])
def test_shipped_history_is_the_checkpoint_run(path):
    """`X.metrics.jsonl` is the training history of `X.pt`: its best epoch is X
    (without a validation split, its last epoch is X and its record is X's)."""
    from itnet_geo.train import load_history, summarize

    name = path.name.replace(".metrics.jsonl", ".pt")
    ckpt = torch.load(path.with_name(name), weights_only=True)
    history = load_history(path)
    summary = summarize(history)
    assert summary["epochs"] == ckpt["train"]["epochs"]
    if ckpt["data"]["val_fraction"] == 0:
        assert summary["best"] is None
        assert ckpt["epoch"] == ckpt["best"]["epoch"] == summary["epochs"]
        assert history[-1]["train_acc"] == ckpt["metrics"]["train_acc"]
        return
    assert summary["best_epoch"] == ckpt["epoch"] == ckpt["best"]["epoch"]
    assert summary["best"] == ckpt["best"]["accuracy"]


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, folder, n",
    [
        ("shrec16_mesh_itnet_holdout.pt", "shrec_16", 120),
        ("modelnet40_itnet_cpu1h.pt", "ModelNet40", 985),
        ("modelnet40_itnet_cpu1h_100ep.pt", "ModelNet40", 985),
        ("modelnet40_itnet_default_150ep.pt", "ModelNet40", 985),
        ("modelnet40_itnet_default_vpl_150ep.pt", "ModelNet40", 985),
    ],
)
def test_checkpoint_reproduces_its_validation_accuracy(
    shared_data, tmp_path, name, folder, n
):
    path = CHECKPOINT_DIR / name
    result = _eval(path, shared_data / folder, "val", tmp_path)
    assert result["n"] == n
    recorded = torch.load(path, weights_only=True)["best"]["accuracy"]
    assert result["accuracy"] == pytest.approx(recorded)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    "names, correct, weighted",
    [
        (
            ["modelnet40_itnet_cpu1h_100ep.pt", "modelnet40_itnet_default_150ep.pt"],
            908,
            0.9142,
        ),
        (
            [
                "modelnet40_itnet_default_vpl_150ep.pt",
                "modelnet40_itnet_default_150ep.pt",
            ],
            913,
            0.9221,
        ),
    ],
)
def test_ensemble_of_the_long_modelnet40_models(
    shared_data, tmp_path, names, correct, weighted
):
    """The README's ensemble figures: shapes right of the 985 validation shapes, and
    the accuracy with the per-class accuracies weighed as the official test split's
    classes."""
    paths = [CHECKPOINT_DIR / name for name in names]
    result = _eval(
        paths,
        shared_data / "ModelNet40",
        "val",
        tmp_path,
        "--class-weights",
        "modelnet40-test",
    )
    assert result["n"] == 985
    assert result["accuracy"] == pytest.approx(correct / 985)
    assert result["weighted_accuracy"] == pytest.approx(weighted, abs=5e-5)


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, folder, n, fit",
    [
        ("shrec16_mesh_itnet.pt", "shrec_16", 480, 0.99),
        ("modelnet40_itnet_default_all_150ep.pt", "ModelNet40", 9843, 0.98),
    ],
)
def test_checkpoint_trained_on_all_of_train(
    shared_data, tmp_path, name, folder, n, fit
):
    """A model meant for the test split saw every train shape: it has no
    validation split, was kept at its last epoch, and fits the train split."""
    path = CHECKPOINT_DIR / name
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["data"]["val_fraction"] == 0
    assert ckpt["epoch"] == ckpt["train"]["epochs"]
    result = _eval(path, shared_data / folder, "train", tmp_path)
    assert result["n"] == n and result["accuracy"] >= fit


def _eval(checkpoint, root, split, cache, *options):
    checkpoints = checkpoint if isinstance(checkpoint, list) else [checkpoint]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "itnet_geo.cli",
            "eval",
            "--checkpoint",
            *map(str, checkpoints),
            "--root",
            str(root),
            "--split",
            split,
            "--cache-dir",
            str(cache),
            *options,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
