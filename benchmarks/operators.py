"""Operator learning on irregular domains: ITNet's ITConv against neuraloperator's GNO.

The tasks of examples/irregular_operator.py (IrregularOperatorTask: Gaussian
smoothing and the Poisson problem on random discs with holes, L-shapes and
polygons), trained at one resolution and tested without retraining on new
problems sampled at the training resolution, 4x and 1/4x as many points, and
with a density varying ten-fold across the domain.

Every model has the same pointwise lift, skips and projection, the same radius
graph (with self-loops; neuralop's own neighbour search returns the same sets,
checked below), the same optimiser, steps, batches and seed; only the kernel
integral differs, and its parameter count is matched:

* ITNet: ITConv, kernel MLP on (p_j - p_i, h_i, h_j), measure "sum" with the
  example's quadrature weights (itnet_geo.nn.sampling.density_weights with a
  boundary correction; sum ~ |Omega|);
* GNO (mean): neuralop 2.0.0 GNOBlock (transform "linear", kernel MLP on the
  sinusoidal embeddings of x and y — neuralop's default "transformer"
  embedding, which did best of transformer / nerf / none in a trial), reduction
  "mean" — 1/|A(x)| weights, as neuralop's GINO uses it;
* GNO + ITNet's weights: the same GNOBlock given ITNet's quadrature weights per
  edge (neuralop then sums), which isolates the kernel parametrisation.

For the smoothing operator a fourth row applies the *known* kernel with the
same quadrature (no learning): the error the discretisation alone causes.

The GNO blocks are neuralop's modules; their neighbourhoods are computed once
per sample, as ITNet's graphs are, and passed to the block's
IntegralTransform. neuralop's pure-PyTorch segment_csr (its fallback when
torch-scatter is not built, which it is not for torch 2.13 here) loops over
points in Python; the benchmark swaps in a vectorised equivalent of
torch_scatter.segment_csr and checks it against neuralop's on a small input.

Reported: mean relative L2(Omega) error per test set, its change against the
training resolution, training time, and peak memory (live CPU tensor memory
from the profiler) of one training step and of one evaluation at 4x points.

    /work/venv-bench/bin/python benchmarks/operators.py   # 5-10 min, 1 core
    /work/venv-bench/bin/python benchmarks/operators.py --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import peak_tensor_bytes
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from itnet_geo.datasets import IrregularOperatorTask

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "irregular_operator", ROOT / "examples" / "irregular_operator.py"
)
ex = importlib.util.module_from_spec(_spec)
sys.modules["irregular_operator"] = ex
_spec.loader.exec_module(ex)

import neuralop  # noqa: E402
import neuralop.layers.integral_transform as _it  # noqa: E402
from neuralop.layers.gno_block import GNOBlock  # noqa: E402
from neuralop.layers.neighbor_search import native_neighbor_search  # noqa: E402
from neuralop.layers.segment_csr import segment_csr as _neuralop_segment_csr  # noqa: E402


# ------------------------------------------------------------- GNO baseline
def segment_csr(src: Tensor, indptr: Tensor, reduction: str, use_scatter=True):
    """torch_scatter.segment_csr (sum / mean) in vectorised PyTorch."""
    point_dim = src.ndim - 2
    splits = indptr[0] if indptr.ndim == 2 else indptr
    counts = splits.diff()
    target = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    shape = list(src.shape)
    shape[point_dim] = counts.numel()
    out = src.new_zeros(shape).index_add(point_dim, target, src)
    if reduction == "mean":
        view = [1] * src.ndim
        view[point_dim] = -1
        out = out / counts.clamp_min(1).to(src).view(view)
    return out


def check_segment_csr() -> float:
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(1, 40, 3, generator=gen)
    splits = torch.tensor([[0, 5, 5, 17, 40]])
    diff = 0.0
    for red in ("sum", "mean"):
        ref = _neuralop_segment_csr(src, splits, red, use_scatter=False)
        diff = max(diff, float((segment_csr(src, splits, red) - ref).abs().max()))
    assert diff < 1e-5, diff
    return diff


_it.segment_csr = segment_csr  # used by neuralop's IntegralTransform


class GNONet(nn.Module):
    """The OperatorNet of the example with neuralop GNOBlocks as kernel integrals."""

    def __init__(
        self,
        channels: int,
        layers: int,
        mlp_hidden: int,
        radius: float,
        weighted: bool,
        embedding: str | None = "transformer",
        embedding_channels: int = 8,
    ):
        super().__init__()
        self.radius = radius
        self.weighted = weighted
        self.lift = nn.Sequential(
            nn.Linear(1, channels), nn.GELU(), nn.Linear(channels, channels)
        )
        self.blocks = nn.ModuleList(
            GNOBlock(
                channels,
                channels,
                coord_dim=2,
                radius=radius,
                transform_type="linear",
                reduction="mean",
                pos_embedding_type=embedding,
                pos_embedding_channels=embedding_channels,
                channel_mlp_layers=[mlp_hidden, mlp_hidden],
                use_torch_scatter_reduce=False,
                use_open3d_neighbor_search=False,
            )
            for _ in range(layers)
        )
        self.skips = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.proj = nn.Sequential(
            nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, 1)
        )

    def forward(self, x, pos, edge_index, weight):
        target = edge_index[1]
        if bool((target.diff() < 0).any()):  # CSR needs edges grouped by target
            order = torch.argsort(target, stable=True)
            edge_index = edge_index[:, order]
        counts = torch.bincount(edge_index[1], minlength=pos.size(0))
        splits = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        nbrs = {"neighbors_index": edge_index[0], "neighbors_row_splits": splits}
        edge_w = None
        if self.weighted:
            edge_w = weight[edge_index[0]] / (math.pi * self.radius**2)
        h = self.lift(x)
        for i, (block, skip) in enumerate(zip(self.blocks, self.skips, strict=True)):
            emb = block.pos_embedding(pos) if block.pos_embedding is not None else pos
            k = block.integral_transform(
                y=emb, x=emb, neighbors=nbrs, f_y=h.unsqueeze(0), weights=edge_w
            ).squeeze(0)
            h = k + skip(h)
            if i < len(self.blocks) - 1:
                h = nn.functional.gelu(h)
        return self.proj(h)


def matched_gno(target: int, **kwargs) -> GNONet:
    """The GNONet whose kernel MLP width brings it closest to target parameters."""
    best = None
    for hidden in range(4, 257):
        net = GNONet(mlp_hidden=hidden, **kwargs)
        gap = abs(ex.count_parameters(net) - target)
        if best is None or gap < best[0]:
            best = (gap, net)
        elif ex.count_parameters(net) > target:
            break
    return best[1]


def check_neighbours(data, radius: float) -> None:
    """neuralop's own radius search finds the graph every model uses."""
    nb = native_neighbor_search(data.pos, data.pos, radius)
    assert nb["neighbors_index"].numel() == data.num_edges, (
        nb["neighbors_index"].numel(),
        data.num_edges,
    )


# --------------------------------------------------------------- measuring
def train_step_memory(model, train, batch_size) -> float:
    batch = next(iter(DataLoader(train, batch_size=batch_size)))

    def step():
        model.train()
        loss = ex.relative_l2(ex.predict(model, batch), batch).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return peak_tensor_bytes(step) / 2**20


def eval_memory(model, data) -> float:
    def run():
        model.eval()
        with torch.no_grad():
            ex.predict(model, data)

    return peak_tensor_bytes(run) / 2**20


def run_task(operator: str, args, log) -> dict:
    t0 = time.perf_counter()
    train, sets = ex.make_sets(
        operator,
        args.num_train,
        args.num_test,
        args.num_points,
        args.radius,
        seed=args.seed,
        draws=args.draws,
    )
    check_neighbours(sets["train res"][0], args.radius)
    degree = {
        name: data[0].num_edges / data[0].num_nodes for name, data in sets.items()
    }
    log(
        f"[{operator}] data in {time.perf_counter() - t0:.0f}s; mean degree "
        + ", ".join(f"{k} {v:.0f}" for k, v in degree.items())
    )

    itnet = ex.build_model(args)
    target = ex.count_parameters(itnet)
    common = dict(
        channels=args.channels,
        layers=args.layers,
        radius=args.radius,
        embedding=args.gno_embedding,
    )
    models = {"ITNet (ITConv)": itnet}
    if operator == "smoothing":
        floor = ex.quadrature_floor(sets, IrregularOperatorTask().sigma)
        log(
            f"[{operator}] known-kernel quadrature: "
            + ", ".join(f"{k} {v:.4f}" for k, v in floor.items())
        )
    else:
        floor = None
    torch.manual_seed(args.seed)
    models["GNO (mean)"] = matched_gno(target, weighted=False, **common)
    if not args.no_weighted_gno:
        torch.manual_seed(args.seed)
        models["GNO + ITNet's weights"] = matched_gno(target, weighted=True, **common)

    rows = []
    for name, model in models.items():
        params = ex.count_parameters(model)
        train_mib = train_step_memory(model, train, args.batch_size)
        info = ex.fit(model, train, args.steps, args.batch_size, args.lr, args.seed)
        errors = ex.evaluate(model, sets)
        eval_mib = eval_memory(model, sets["4x points"][0])
        row = {
            "task": operator,
            "model": name,
            "parameters": params,
            "train_seconds": info["seconds"],
            "final_loss": info["final_loss"],
            "train_step_peak_mib": train_mib,
            "eval_4x_peak_mib": eval_mib,
            "errors": errors,
            "change_vs_train_res": {
                k: v / errors["train res"] - 1 for k, v in errors.items()
            },
        }
        rows.append(row)
        log(
            f"[{operator}] {name}: {params} params, {info['seconds']:.0f}s, "
            + ", ".join(f"{k} {v:.4f}" for k, v in errors.items())
        )
    base = rows[0]
    for row in rows:
        row["error_vs_itnet"] = {
            k: v / base["errors"][k] for k, v in row["errors"].items()
        }
        row["time_vs_itnet"] = row["train_seconds"] / base["train_seconds"]
        row["memory_vs_itnet"] = (
            row["train_step_peak_mib"] / base["train_step_peak_mib"]
        )
    return {"degree": degree, "quadrature_floor": floor, "rows": rows}


def write_markdown(path: Path, meta: dict, results: dict) -> None:
    a = meta["args"]
    lines = [
        "# Operators on irregular domains (benchmarks/operators.py)",
        "",
        f"Trained at {a['num_points']} points per sample ({a['num_train']} problems x "
        f"{a['draws']} point sets, "
        f"{a['steps']} steps of {a['batch_size']}, AdamW + one-cycle, lr {a['lr']}), "
        f"tested on {a['num_test']} new problems; radius graph r = {a['radius']}; "
        f"{a['layers']} kernel-integral layers of {a['channels']} channels; "
        "ITConv kernel "
        f"inputs {a['kernel_inputs']}, kernel MLP width {a['hidden']}; GNO "
        f"embedding {a['gno_embedding']}. "
        f"torch {meta['torch']}, neuraloperator {meta['neuralop']}, "
        f"{meta['threads']} thread(s), {meta['machine']}.",
        "",
        "Relative L2(Omega) error (mean over test problems); in brackets the change "
        "against the training resolution.",
        "",
    ]
    sets = ["train res", "4x points", "1/4 points", "non-uniform"]
    for operator, res in results.items():
        deg = res["degree"]
        lines += [
            f"## {operator}",
            "",
            "Mean degree: " + ", ".join(f"{k} {deg[k]:.0f}" for k in sets) + ".",
            "",
            "| model | params | " + " | ".join(sets) + " | train time | "
            "train-step peak | eval peak (4x) |",
            "|---|---:|" + "---:|" * len(sets) + "---:|---:|---:|",
        ]
        for r in res["rows"]:
            cells = [
                f"{r['errors'][s]:.4f}"
                + ("" if s == "train res" else f" ({r['change_vs_train_res'][s]:+.0%})")
                for s in sets
            ]
            lines.append(
                f"| {r['model']} | {r['parameters']} | "
                + " | ".join(cells)
                + f" | {r['train_seconds']:.0f} s | {r['train_step_peak_mib']:.0f} MiB"
                f" | {r['eval_4x_peak_mib']:.0f} MiB |"
            )
        if res["quadrature_floor"]:
            fl = res["quadrature_floor"]
            lines.append(
                "| known kernel G_sigma, same quadrature (no learning) | 0 | "
                + " | ".join(
                    f"{fl[s]:.4f}"
                    + (
                        ""
                        if s == "train res"
                        else f" ({fl[s] / fl['train res'] - 1:+.0%})"
                    )
                    for s in sets
                )
                + " | | | |"
            )
        lines += [
            "",
            "Ratios to ITNet (error per test set, training time, memory):",
            "",
            "| model | " + " | ".join(sets) + " | time | train-step memory |",
            "|---|" + "---:|" * (len(sets) + 2),
        ]
        for r in res["rows"][1:]:
            lines.append(
                f"| {r['model']} | "
                + " | ".join(f"{r['error_vs_itnet'][s]:.2f}" for s in sets)
                + f" | {r['time_vs_itnet']:.2f} | {r['memory_vs_itnet']:.2f} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--operators", default="smoothing,poisson")
    ex.add_arguments(parser)
    parser.set_defaults(steps=350)
    parser.add_argument(
        "--gno-embedding",
        default="transformer",
        help="GNOBlock pos_embedding_type: transformer, nerf or none",
    )
    parser.add_argument("--no-weighted-gno", action="store_true")
    parser.add_argument(
        "--out",
        default=None,
        help="results folder (default: benchmarks/results, or a "
        "temporary folder with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny, for a smoke run")
    args = parser.parse_args(argv)
    if args.gno_embedding == "none":
        args.gno_embedding = None
    if args.quick:
        args.num_train, args.draws, args.num_test, args.steps = 8, 1, 2, 20
        args.num_points = 256
    torch.set_num_threads(args.threads)
    check_segment_csr()
    start = time.perf_counter()

    def log(msg):
        print(f"{time.perf_counter() - start:6.0f}s  {msg}", flush=True)

    results = {op: run_task(op, args, log) for op in args.operators.split(",")}
    meta = {
        "torch": torch.__version__,
        "neuralop": neuralop.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "args": vars(args),
        "seconds": time.perf_counter() - start,
    }
    if args.out is None:
        args.out = (
            tempfile.mkdtemp() if args.quick else str(ROOT / "benchmarks" / "results")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "operators_quick" if args.quick else "operators"
    (out / f"{name}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    write_markdown(out / f"{name}.md", meta, results)
    print((out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
