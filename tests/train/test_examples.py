"""The examples run end to end with --smoke (generated data, tiny models)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, n_eval",
    [
        ("synthetic_classification", 8),  # 4 classes x 2 test shapes
        ("modelnet40_classification", 8),
        ("shrec16_classification", 6),  # 3 classes x 2 test meshes
    ],
)
def test_example_smoke(name, n_eval, tmp_path):
    module = _load(name)
    argv = [
        "--smoke",
        "--root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    summary = module.main(argv)  # train_run's summary, also in results.json
    assert summary["split"] == "test"
    assert summary["n"] == n_eval
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert (tmp_path / "run" / "best.pt").is_file()
    assert (tmp_path / "run" / "results.json").is_file()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 1
