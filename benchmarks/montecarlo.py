"""Quadrature weights and Monte Carlo subsampling of ITConv, measured.

All parts use the unit sphere sampled with density proportional to
5.5 + 4.5 z: ten times denser at the north pole than at the south pole.

(a) Quadrature: integrals of known functions over the sphere from the samples,
    with uniform weights, density weights (mean 1, times the known area; and
    normalised to the estimated measure, which needs no area) and PointConv's
    fixed-bandwidth density.
(b) Variance: the spread of unbiased Monte Carlo estimates at equal sample size
    for uniform, weight-proportional and distance importance — of the integral
    itself (node subsampling) and of an ITConv layer (neighbour subsampling).
(c) Cost: ITConv forward + backward time and peak memory at ratios 1, 0.5 and
    0.25, on the reference (message-passing) and the fused (tiled) path.

    python benchmarks/montecarlo.py            # writes results/montecarlo.{json,md}
    python benchmarks/montecarlo.py --quick    # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from _common import peak_tensor_bytes

from itnet_geo.nn import ITConv, MonteCarlo
from itnet_geo.nn.sampling import density_weights, uniform_weights
from itnet_geo.ops import knn_graph

AREA = 4 * math.pi
FUNCTIONS = {
    # name: (f(pos), exact integral over the unit sphere)
    "(1 + z)^2": (lambda p: (1 + p[:, 2]) ** 2, 16 * math.pi / 3),
    "exp(z)": (lambda p: p[:, 2].exp(), 2 * math.pi * (math.e - 1 / math.e)),
    "1 + Y1 + Y2 (harmonics)": (
        lambda p: 1 + p[:, 0] + 2 * p[:, 2] + 3 * p[:, 2] ** 2 - 1 + p[:, 0] * p[:, 1],
        4 * math.pi,
    ),
}


def nonuniform_sphere(num: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """Unit sphere, density proportional to 5.5 + 4.5 z (from 1 to 10)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, generator=gen, dtype=dtype)
    z = (-5.5 + torch.sqrt(1 + 99 * u)) / 4.5  # inverse CDF in z
    phi = 2 * math.pi * torch.rand(num, generator=gen, dtype=dtype)
    r = (1 - z * z).clamp_min(0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


# ------------------------------------------------------------------ (a)
def quadrature(num: int, seeds: int, k: int) -> list[dict]:
    rows = []
    errors: dict[tuple[str, str], list[float]] = {}
    for seed in range(seeds):
        pos = nonuniform_sphere(num, seed)
        edge_index = knn_graph(pos, k=k)
        spacing = float((pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=1).median())
        rules = {
            "uniform (area x mean f)": AREA * uniform_weights(pos) / num,
            "density, mean 1 (area x mean w f)": AREA
            * density_weights(pos, edge_index)
            / num,
            "density, measure (sum w f, area unknown)": density_weights(
                pos, edge_index, normalize="measure"
            ),
            "PointConv fixed bandwidth (area x mean w f)": AREA
            * density_weights(pos, edge_index, bandwidth=spacing)
            / num,
        }
        for fname, (f, exact) in FUNCTIONS.items():
            values = f(pos)
            for rule, weight in rules.items():
                error = float((weight * values).sum()) / exact - 1
                errors.setdefault((fname, rule), []).append(error)
        measure = float(rules["density, measure (sum w f, area unknown)"].sum())
        errors.setdefault(("area 4 pi", "density, measure (sum w f, area unknown)"), [])
        errors[("area 4 pi", "density, measure (sum w f, area unknown)")].append(
            measure / AREA - 1
        )
    for (fname, rule), errs in errors.items():
        rows.append(
            {
                "function": fname,
                "weights": rule,
                "mean_abs_error": statistics.fmean(abs(e) for e in errs),
                "max_abs_error": max(abs(e) for e in errs),
                "mean_error": statistics.fmean(errs),
            }
        )
    return rows


# ------------------------------------------------------------------ (b)
def _spread(estimates: torch.Tensor, exact: torch.Tensor) -> dict:
    """Relative mean squared error (= variance, the estimates are unbiased)."""
    mse = (estimates - exact).pow(2).mean(0).sum()
    bias = (estimates.mean(0) - exact).pow(2).sum()
    se = estimates.std(0).pow(2).sum() / estimates.size(0)
    return {
        "relative_mse": float(mse / exact.pow(2).sum()),
        "bias_sq_over_se_sq": float(bias / se),
    }


def _draws(mc, edge_index, weight, values, pos, num_dst, draws):
    """Estimates of sum_j w_ij values_ij per target, one row per draw."""
    out = []
    for _ in range(draws):
        sub, sub_weight = mc(edge_index, weight, None, num_dst, pos)
        term = sub_weight * values[_edge_ids(sub, edge_index)]
        out.append(torch.zeros(num_dst, dtype=term.dtype).index_add_(0, sub[1], term))
    return torch.stack(out)


def _edge_ids(sub: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    """Positions of the (distinct) edges of sub in edge_index."""
    n = int(edge_index.max()) + 1
    key = edge_index[1] * n + edge_index[0]
    order = torch.argsort(key)
    return order[torch.searchsorted(key[order], sub[1] * n + sub[0])]


def variance(num: int, k: int, draws: int, ratio: float, seed: int) -> list[dict]:
    pos = nonuniform_sphere(num, seed)
    edge_index = knn_graph(pos, k=k)
    weight = density_weights(pos, edge_index, normalize="measure")
    src, dst = edge_index
    rows = []

    def add(task, importance, estimates, exact):
        rows.append(
            {"task": task, "importance": importance, **_spread(estimates, exact)}
        )

    # (1) the integral itself: subsample m = ratio * N of the nodes
    star = torch.stack([torch.arange(num), torch.zeros(num, dtype=torch.long)])
    for fname, f in [
        ("1 + z^2", 1 + pos[:, 2] ** 2),
        ("(1 + z)^2, large where w is small", (1 + pos[:, 2]) ** 2),
    ]:
        exact = (weight * f).sum().view(1)
        for importance in ["uniform", "weight"]:
            mc = MonteCarlo(
                ratio=ratio,
                importance=importance,
                mode="node",
                generator=torch.Generator().manual_seed(seed),
            )
            est = _draws(mc, star, weight, f, None, 1, draws)
            add(f"integral of {fname}, node subsampling", importance, est, exact)

    # (2) Gaussian smoothing of f over each k-NN neighbourhood:
    #     sum_j w_j exp(-|p_j - p_i|^2 / 2 s_i^2) f(p_j), s_i = RMS neighbour distance
    f = 1 + pos[:, 2] ** 2
    sq = (pos[src] - pos[dst]).pow(2).sum(1)
    rms = torch.zeros(num, dtype=sq.dtype).index_add_(0, dst, sq) / k
    values = torch.exp(-sq / (2 * rms[dst])) * f[src]
    w_edge = weight[src]
    exact = torch.zeros(num, dtype=sq.dtype).index_add_(0, dst, w_edge * values)
    for importance in ["uniform", "weight", "distance"]:
        mc = MonteCarlo(
            ratio=ratio,
            importance=importance,
            generator=torch.Generator().manual_seed(seed),
        )
        est = _draws(mc, edge_index, w_edge, values, (pos, pos), num, draws)
        add("Gaussian smoothing, neighbour subsampling", importance, est, exact)

    # (3) an ITConv layer (random initialisation, measure sum)
    torch.manual_seed(seed)
    channels = 16
    x = torch.randn(num, channels, dtype=torch.float64)
    conv = ITConv(channels, channels, hidden=32, measure="sum").double()
    with torch.no_grad():
        exact = conv(x, pos, edge_index, weight=weight)
        for importance in ["uniform", "weight", "distance"]:
            conv.mc = MonteCarlo(
                ratio=ratio,
                importance=importance,
                generator=torch.Generator().manual_seed(seed),
            )
            est = torch.stack(
                [conv(x, pos, edge_index, weight=weight) for _ in range(draws)]
            )
            add(
                "ITConv output (random init), neighbour subsampling",
                importance,
                est,
                exact,
            )
            conv.mc = None
    for row in rows:
        base = next(
            r["relative_mse"]
            for r in rows
            if r["task"] == row["task"] and r["importance"] == "uniform"
        )
        row["variance_vs_uniform"] = row["relative_mse"] / base
    return rows


# ------------------------------------------------------------------ (c)
def cost(num: int, k: int, channels: int, repeat: int, seed: int) -> list[dict]:
    pos = nonuniform_sphere(num, seed, dtype=torch.float32)
    edge_index = knn_graph(pos, k=k)
    weight = density_weights(pos, edge_index)
    torch.manual_seed(seed)
    x = torch.randn(num, channels)
    configs = []
    for path, tile in [("reference", None), ("fused", 8192)]:
        for ratio in [1.0, 0.5, 0.25]:
            torch.manual_seed(0)
            conv = ITConv(channels, channels, hidden=64, tile_size=tile)
            conv.mc = MonteCarlo(
                ratio=ratio, generator=torch.Generator().manual_seed(0)
            )
            xr = x.clone().requires_grad_()

            def step(conv=conv, xr=xr):
                out = conv(xr, pos, edge_index, weight=weight)
                out.square().mean().backward()

            def sample(conv=conv):
                conv.mc(edge_index, weight[edge_index[0]], num, num, (pos, pos))

            step()  # warm-up
            configs.append(
                {
                    "path": path,
                    "ratio": ratio,
                    "step": step,
                    "sample": sample,
                    "times": [],
                    "sample_times": [],
                }
            )
    # Round robin, so that load from other processes spreads over all configs;
    # one thread and its CPU time (time.thread_time), which waiting for a core
    # shared with other processes does not inflate, plus the best wall time.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(repeat):
        for c in configs:
            start, wall = time.thread_time(), time.perf_counter()
            c["step"]()
            c["times"].append(time.thread_time() - start)
            c.setdefault("walls", []).append(time.perf_counter() - wall)
            start = time.thread_time()
            c["sample"]()
            c["sample_times"].append(time.thread_time() - start)
    torch.set_num_threads(threads)
    rows = []
    for c in configs:
        rows.append(
            {
                "path": c["path"],
                "ratio": c["ratio"],
                "edges": int(math.ceil(c["ratio"] * k - 1e-9)) * num,
                "time_s": statistics.median(c["times"]),
                "time_min_s": min(c["times"]),
                "wall_min_s": min(c["walls"]),
                "sampling_s": (
                    0.0 if c["ratio"] == 1.0 else statistics.median(c["sample_times"])
                ),
                "peak_mib": peak_tensor_bytes(c["step"]) / 2**20,
            }
        )
    for row in rows:
        base = next(r for r in rows if r["path"] == row["path"] and r["ratio"] == 1.0)
        row["time_vs_exact"] = row["time_s"] / base["time_s"]
        row["memory_vs_exact"] = row["peak_mib"] / base["peak_mib"]
    return rows


# --------------------------------------------------------------- output
def _markdown(meta, quad, var, cst) -> str:
    lines = [
        "# Monte Carlo integration (benchmarks/montecarlo.py)",
        "",
        f"Unit sphere, sampling density 1 to 10 (proportional to 5.5 + 4.5 z); "
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}.",
        "",
        "## (a) Quadrature: relative error of the integral "
        f"({meta['quad_num']} points, k = {meta['k']}, {meta['quad_seeds']} clouds)",
        "",
        "| function | weights | mean abs error | max abs error |",
        "|---|---|---:|---:|",
    ]
    for r in quad:
        lines.append(
            f"| {r['function']} | {r['weights']} | {100 * r['mean_abs_error']:.2f}% | "
            f"{100 * r['max_abs_error']:.2f}% |"
        )
    lines += [
        "",
        f"## (b) Variance at equal sample size (ratio {meta['var_ratio']}, "
        f"{meta['var_draws']} draws, {meta['var_num']} points)",
        "",
        "| estimate | importance | relative MSE | vs uniform | bias^2 / SE^2 |",
        "|---|---|---:|---:|---:|",
    ]
    for r in var:
        lines.append(
            f"| {r['task']} | {r['importance']} | {r['relative_mse']:.2e} | "
            f"{r['variance_vs_uniform']:.2f} | {r['bias_sq_over_se_sq']:.1f} |"
        )
    lines += [
        "",
        f"## (c) ITConv forward + backward ({meta['cost_num']} points, "
        f"k = {meta['k']}, {meta['cost_channels']} channels, hidden 64, float32; "
        f"one thread, CPU time, median of {meta['cost_repeat']}; peak of live tensor "
        "memory from the profiler)",
        "",
        "| path | ratio | edges | CPU time | vs exact | of which sampling | "
        "best wall time | peak memory | vs exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in cst:
        lines.append(
            f"| {r['path']} | {r['ratio']} | {r['edges']} | "
            f"{1e3 * r['time_s']:.1f} ms | {r['time_vs_exact']:.2f} | "
            f"{1e3 * r['sampling_s']:.1f} ms | "
            f"{1e3 * r['wall_min_s']:.1f} ms | "
            f"{r['peak_mib']:.1f} MiB | {r['memory_vs_exact']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=16, help="neighbours per point")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results"
    )
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    quick = args.quick
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "k": args.k,
        "quad_num": 1000 if quick else 2000,
        "quad_seeds": 2 if quick else 5,
        "var_num": 500 if quick else 1000,
        "var_draws": 30 if quick else 100,
        "var_ratio": 0.25,
        "cost_num": 1024 if quick else 4096,
        "cost_channels": 32,
        "cost_repeat": 2 if quick else 5,
    }
    start = time.perf_counter()
    quad = quadrature(meta["quad_num"], meta["quad_seeds"], args.k)
    var = variance(
        meta["var_num"], args.k, meta["var_draws"], meta["var_ratio"], args.seed
    )
    cst = cost(
        meta["cost_num"], args.k, meta["cost_channels"], meta["cost_repeat"], args.seed
    )
    meta["seconds"] = time.perf_counter() - start
    text = _markdown(meta, quad, var, cst)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "montecarlo.json").write_text(
        json.dumps(
            {"meta": meta, "quadrature": quad, "variance": var, "cost": cst}, indent=2
        )
        + "\n"
    )
    (args.out / "montecarlo.md").write_text(text)
    print(
        f"wrote {args.out / 'montecarlo.json'} and {args.out / 'montecarlo.md'} "
        f"in {meta['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
