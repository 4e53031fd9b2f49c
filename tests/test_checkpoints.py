"""The shipped checkpoints load, rebuild their model and evaluate."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from itnet_geo.nn.models import build_model

CHECKPOINTS = sorted((Path(__file__).resolve().parents[1] / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[p.name for p in CHECKPOINTS])
def test_checkpoint_loads_with_weights_only_and_rebuilds(path):
    assert path.stat().st_size <= 20 * 2**20
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "itnet_geo.checkpoint"
    model = build_model(ckpt["model"]["name"], **ckpt["model"]["kwargs"])
    model.load_state_dict(ckpt["state_dict"])  # strict: every key matches
    assert len(ckpt["classes"]) == model.config["num_classes"]


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, folder, n",
    [
        ("shrec16_mesh_itnet.pt", "shrec_16", 120),
        ("modelnet40_itnet_cpu1h.pt", "ModelNet40", 985),
    ],
)
def test_checkpoint_reproduces_its_validation_accuracy(
    shared_data, tmp_path, name, folder, n
):
    path = Path(__file__).resolve().parents[1] / "checkpoints" / name
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "itnet_geo.cli",
            "eval",
            "--checkpoint",
            str(path),
            "--root",
            str(shared_data / folder),
            "--split",
            "val",
            "--cache-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == n
    recorded = torch.load(path, weights_only=True)["best"]["accuracy"]
    assert result["accuracy"] == pytest.approx(recorded)
