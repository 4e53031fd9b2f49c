import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from itnet_geo.datasets import IrregularOperatorTask
from itnet_geo.nn import ITConv
from itnet_geo.ops import knn_graph

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "irregular_operator.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("irregular_operator", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["boundary", "density", "exact", "uniform"])
def test_quadrature_weights_sum_to_about_the_area(ex, kind):
    data = IrregularOperatorTask(num_samples=2, num_points=1024, seed=5)[1]
    w = ex.quadrature_weights(data, kind)
    assert w.shape == (1024,) and bool((w > 0).all())
    tol = {"boundary": 0.12, "density": 0.2}.get(kind, 1e-5)
    assert float(w.sum()) == pytest.approx(float(data.area), rel=tol)
    with pytest.raises(ValueError, match="unknown quadrature"):
        ex.quadrature_weights(data, "voronoi")


def test_boundary_weights_drift_less_with_resolution(ex):
    # Density weights alone overweight a boundary band that shrinks with N,
    # so the total drifts with resolution; the corrected ones are closer to
    # the area at each resolution and drift less.
    task = IrregularOperatorTask(num_samples=2, num_points=128, seed=6)
    area = float(task[0].area)
    totals = {
        kind: [
            float(ex.quadrature_weights(task.resample(num_points=n)[0], kind).sum())
            for n in (512, 2048)
        ]
        for kind in ("density", "boundary")
    }
    for plain, fixed in zip(totals["density"], totals["boundary"], strict=True):
        assert abs(fixed - area) < abs(plain - area)
    drift = {kind: abs(t[0] / t[1] - 1) for kind, t in totals.items()}
    assert drift["boundary"] < drift["density"]


def test_prepare_builds_a_radius_graph_with_self_loops(ex):
    data = ex.prepare(IrregularOperatorTask(1, 300, seed=2)[0], radius=0.3)
    src, dst = data.edge_index
    assert bool((src == dst).sum() == 300)
    assert float((data.pos[src] - data.pos[dst]).norm(dim=1).max()) <= 0.3 + 1e-6
    assert data.quad_weight.shape == (300,)


def test_relative_l2_is_zero_for_the_truth_and_one_for_zero(ex):
    data = IrregularOperatorTask(2, 200, seed=1)[0]
    assert float(ex.relative_l2(data.y, data)) == 0.0
    assert float(ex.relative_l2(torch.zeros_like(data.y), data)) == pytest.approx(1.0)


def test_radius_graph_with_weights_is_consistent_across_resolutions(ex):
    # Coarse points are a subset of the fine ones. At those points an ITConv
    # on the radius graph with quadrature weights gives nearly the same output
    # at 4x the points; k-NN balls shrink and unit weights add up more terms.
    task = IrregularOperatorTask(num_samples=1, num_points=2048, seed=4)
    full, r = task[0], 0.3
    fine = ex.prepare(full, r)
    coarse = ex.prepare(
        Data(pos=full.pos[:512], x=full.x[:512], y=full.y[:512], area=full.area), r
    )
    torch.manual_seed(0)
    conv = ITConv(1, 8, pos_dim=2, kernel_inputs=("rel_pos",), hidden=8)

    def gap(graph, weight):
        with torch.no_grad():
            a = conv(fine.x, fine.pos / r, graph(fine), weight(fine))[:512]
            b = conv(coarse.x, coarse.pos / r, graph(coarse), weight(coarse))
        return float((a - b).norm() / a.norm())

    radius = gap(lambda d: d.edge_index, lambda d: d.quad_weight / (math.pi * r * r))
    knn = gap(
        lambda d: knn_graph(d.pos, 16, loop=True),
        lambda d: d.quad_weight / (math.pi * r * r),
    )
    unit = gap(lambda d: d.edge_index, lambda d: torch.ones(d.num_nodes))
    assert radius < 0.3
    assert knn > 3 * radius and unit > 2 * radius


def test_smoke_run_trains_and_reports_every_test_set(ex, capsys):
    result = ex.main(
        [
            "--smoke",
            "--steps",
            "100",
            "--num-train",
            "6",
            "--num-test",
            "2",
            "--num-points",
            "256",
        ]
    )
    assert set(result["errors"]) == {
        "train res",
        "4x points",
        "1/4 points",
        "non-uniform",
    }
    assert all(math.isfinite(v) for v in result["errors"].values())
    assert result["train"]["final_loss"] < 0.5  # predicting 0 scores 1.0
    assert result["errors"]["train res"] < 0.6
    assert set(result["quadrature_floor"]) == set(result["errors"])
    out = capsys.readouterr().out
    assert "4x points" in out and "known-kernel quadrature" in out


@pytest.mark.slow
def test_smoke_command_runs_well_within_five_minutes(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "non-uniform" in proc.stdout
    result = json.loads(out.read_text())
    errors = result["errors"]
    assert errors["train res"] < 0.5
    assert errors["4x points"] < 1.2 * errors["train res"]
