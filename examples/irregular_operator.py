"""Learn an operator on irregular 2-D domains; test it at other resolutions.

An ITConv operator network — a pointwise lift, a few kernel integrals

    h_i <- act( sum_{|p_j - p_i| <= r}  w_j kappa(p_j - p_i, h_i, h_j) * V h_j
                + W h_i )

and a pointwise projection — is trained on IrregularOperatorTask samples at one
resolution and tested, without retraining, on new problems sampled with the
same number of points, 4x and 1/4x as many, and with a density that varies
ten-fold across the domain.

What makes the network resolution-invariant: every step is either pointwise or
a quadrature of an integral over a ball of fixed radius r — a radius graph with
self-loops, not k-NN, whose balls would shrink as points are added — with
measure="sum" and quadrature weights w_j that stand for the area around each
point (sum_j w_j ~ |Omega|): density_weights (itnet_geo.nn.sampling, an inverse
kernel-density estimate) with its boundary correction (boundary=True: the
estimate misses the part of its kernel outside the domain). The sum then
approximates the same integral at any resolution and under any sampling. For
the smoothing operator the run also prints the error of the *known* kernel
applied by the same quadrature: the floor the discretisation alone sets.

    python examples/irregular_operator.py                       # ~3 min on 1 core
    python examples/irregular_operator.py --operator poisson
    python examples/irregular_operator.py --smoke               # ~1 min, for tests
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from itnet_geo.datasets import IrregularOperatorTask
from itnet_geo.nn import ITConv
from itnet_geo.nn.sampling import density_weights
from itnet_geo.ops import knn_graph, radius_graph

QUADRATURES = ("boundary", "density", "exact", "uniform")
#: Defaults of ``--smoke``.
SMOKE = dict(num_train=16, draws=1, num_test=4, steps=150)


# ---------------------------------------------------------------------- data
def quadrature_weights(data: Data, kind: str = "boundary", k: int = 16) -> Tensor:
    """Quadrature weights of the sample points (about the area each stands for).

    ``density``: :func:`~itnet_geo.nn.sampling.density_weights` normalised to
    the estimated measure (an inverse kernel-density estimate: right inside
    the domain, too large within a kernel width of the boundary);
    ``boundary``: the same with ``boundary=True``, which scales each weight
    by the share of its kernel inside the domain; ``exact``: the true
    importance weights of the sampling (known only for generated data);
    ``uniform``: |Omega| / N for every point. All sum to about |Omega|.
    """
    n = data.num_nodes
    if kind in ("density", "boundary"):
        return density_weights(
            data.pos,
            knn_graph(data.pos, k=k),
            dim=2,
            normalize="measure",
            boundary=kind == "boundary",
        )
    if kind == "exact":
        return data.weight.clone()
    if kind == "uniform":
        return data.pos.new_full((n,), float(data.area) / n)
    raise ValueError(f"unknown quadrature {kind!r}; expected one of {QUADRATURES}")


def prepare(data: Data, radius: float, quadrature: str = "boundary") -> Data:
    """Attach the radius graph and the quadrature weights (``quad_weight``).

    The graph has self-loops: the centre point is one of the quadrature nodes
    of its own ball (leaving it out would drop a share of about 1 / degree of
    the integral, a bias that grows as the resolution falls).
    """
    data = data.clone()
    data.edge_index = radius_graph(
        data.pos, radius, loop=True, max_num_neighbors=1 << 20
    )
    data.quad_weight = quadrature_weights(data, quadrature)
    return data


def make_sets(
    operator: str,
    num_train: int,
    num_test: int,
    num_points: int,
    radius: float,
    quadrature: str = "boundary",
    seed: int = 0,
    draws: int = 1,
) -> tuple[list[Data], dict[str, list[Data]]]:
    """Training samples and the four test sets (same test problems in each).

    Each training problem is sampled :obj:`draws` times (independent point
    sets at the training resolution), so the network sees the quadrature
    noise it must average out rather than one fixed set of points.
    """
    train = IrregularOperatorTask(num_train, num_points, operator=operator, seed=seed)
    test = IrregularOperatorTask(num_test, num_points, operator=operator, seed=seed + 1)
    variants = {
        "train res": test,
        "4x points": test.resample(num_points=4 * num_points),
        "1/4 points": test.resample(num_points=max(num_points // 4, 8)),
        "non-uniform": test.resample(sampling="nonuniform"),
    }

    def build(task):
        return [prepare(task[i], radius, quadrature) for i in range(len(task))]

    train_samples = [
        sample
        for draw in range(draws)
        for sample in build(train.resample(point_seed=1000 + draw))
    ]
    return train_samples, {name: build(task) for name, task in variants.items()}


def kernel_quadrature(data: Data, sigma: float) -> Tensor:
    """The smoothing operator with its *known* kernel, by the same quadrature.

    u_i = sum_j w_j G_sigma(p_j - p_i) f_j over all points, with the
    ``quad_weight`` of the sample: no learning, so its error is the floor that
    the discretisation alone sets at this resolution and sampling.
    """
    sq = torch.cdist(data.pos.double(), data.pos.double()).pow(2)
    kernel = torch.exp(-sq / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    out = kernel @ (data.quad_weight.double() * data.x[:, 0].double())
    return out.to(data.x.dtype).unsqueeze(-1)


def quadrature_floor(sets: dict[str, list[Data]], sigma: float) -> dict[str, float]:
    """Mean relative L2 error of :func:`kernel_quadrature` on each test set."""
    return {
        name: float(
            torch.cat(
                [relative_l2(kernel_quadrature(d, sigma), d) for d in data]
            ).mean()
        )
        for name, data in sets.items()
    }


# --------------------------------------------------------------------- model
class OperatorNet(nn.Module):
    r"""Lift -> ITConv kernel integrals with pointwise skips -> projection.

    Each layer is :math:`h \leftarrow \sigma(K h + W h)` with :math:`K` an
    :class:`~itnet_geo.nn.ITConv` (``measure="sum"``) on the radius graph,
    positions measured in units of the radius and quadrature weights divided by
    the ball's area :math:`\pi r^2` (so a full ball sums to about one).
    """

    def __init__(
        self,
        channels: int = 32,
        layers: int = 3,
        hidden: int = 32,
        radius: float = 0.2,
        kernel_inputs: Sequence[str] = ("rel_pos",),
        kernel_layers: int = 2,
        tile_size: int | None = None,
    ):
        super().__init__()
        self.radius = radius
        self.lift = nn.Sequential(
            nn.Linear(1, channels), nn.GELU(), nn.Linear(channels, channels)
        )
        self.convs = nn.ModuleList(
            ITConv(
                channels,
                channels,
                pos_dim=2,
                kernel_inputs=tuple(kernel_inputs),
                hidden=hidden,
                act="gelu",
                num_layers=kernel_layers,
                measure="sum",
                tile_size=tile_size,
            )
            for _ in range(layers)
        )
        self.skips = nn.ModuleList(nn.Linear(channels, channels) for _ in range(layers))
        self.proj = nn.Sequential(
            nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, 1)
        )

    def forward(self, x: Tensor, pos: Tensor, edge_index: Tensor, weight: Tensor):
        h = self.lift(x)
        pos = pos / self.radius
        weight = weight / (math.pi * self.radius**2)
        for i, (conv, skip) in enumerate(zip(self.convs, self.skips, strict=True)):
            h = conv(h, pos, edge_index, weight) + skip(h)
            if i < len(self.convs) - 1:
                h = nn.functional.gelu(h)
        return self.proj(h)


def predict(model: nn.Module, data: Data) -> Tensor:
    return model(data.x, data.pos, data.edge_index, data.quad_weight)


# ----------------------------------------------------------------- training
def relative_l2(pred: Tensor, data: Data) -> Tensor:
    """Per-sample relative L2(Omega) error, integrated with the exact weights."""
    batch = (
        data.batch if data.batch is not None else torch.zeros_like(data.weight).long()
    )
    num = int(batch.max()) + 1
    sq = data.weight * (pred - data.y).squeeze(-1) ** 2
    ref = data.weight * data.y.squeeze(-1) ** 2
    err = sq.new_zeros(num).index_add(0, batch, sq)
    nrm = ref.new_zeros(num).index_add(0, batch, ref)
    return (err / nrm.clamp_min(1e-30)).sqrt()


def fit(
    model: nn.Module,
    train: list[Data],
    steps: int,
    batch_size: int = 4,
    lr: float = 3e-3,
    seed: int = 0,
    predict_fn=predict,
    log_every: int = 0,
) -> dict:
    """AdamW with a one-cycle schedule on the mean relative L2 error."""
    torch.manual_seed(seed)
    scale = float(torch.cat([d.y for d in train]).pow(2).mean().sqrt())
    model.output_scale = scale
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen)
    model.train()
    step, start, history = 0, time.perf_counter(), []
    while step < steps:
        for batch in loader:
            loss = relative_l2(predict_fn(model, batch) * scale, batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            history.append(float(loss.detach()))
            if log_every and step % log_every == 0:
                print(
                    f"  step {step:4d}  loss {history[-1]:.4f}  "
                    f"{time.perf_counter() - start:.0f}s",
                    flush=True,
                )
            if step >= steps:
                break
    model.eval()
    return {"seconds": time.perf_counter() - start, "final_loss": history[-1]}


@torch.no_grad()
def evaluate(model: nn.Module, sets: dict[str, list[Data]], predict_fn=predict):
    """Mean relative L2 error on each test set."""
    model.eval()
    scale = model.output_scale
    return {
        name: float(
            torch.cat(
                [relative_l2(predict_fn(model, d) * scale, d) for d in data]
            ).mean()
        )
        for name, data in sets.items()
    }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------- main
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and training options (shared with benchmarks/operators.py)."""
    add = parser.add_argument
    add("--num-train", type=int, default=48, help="training problems")
    add("--draws", type=int, default=2, help="point samplings per training problem")
    add("--num-test", type=int, default=12, help="test problems")
    add("--num-points", type=int, default=512, help="points at the training resolution")
    add("--radius", type=float, default=0.25, help="radius of the integration balls")
    add("--channels", type=int, default=16)
    add("--hidden", type=int, default=16, help="hidden width of the kernel MLP")
    add("--layers", type=int, default=3, help="kernel-integral layers")
    add("--kernel-inputs", default="rel_pos,x_i,x_j", help="ITConv kernel inputs")
    add("--kernel-layers", type=int, default=2, help="linear layers of the kernel")
    add("--steps", type=int, default=400)
    add("--batch-size", type=int, default=4)
    add("--lr", type=float, default=3e-3)
    add("--seed", type=int, default=0)
    add(
        "--threads", type=int, default=1, help="torch threads (1 is best on a busy box)"
    )


def build_model(args) -> OperatorNet:
    torch.manual_seed(args.seed)
    return OperatorNet(
        args.channels,
        args.layers,
        args.hidden,
        args.radius,
        kernel_inputs=args.kernel_inputs.split(","),
        kernel_layers=args.kernel_layers,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--operator", choices=("smoothing", "poisson"), default="smoothing"
    )
    parser.add_argument("--quadrature", choices=QUADRATURES, default="boundary")
    add_arguments(parser)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument(
        "--smoke", action="store_true", help="16 problems, 150 steps (about a minute)"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--smoke" in argv:  # smaller defaults; options given explicitly still win
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    train, sets = make_sets(
        args.operator,
        args.num_train,
        args.num_test,
        args.num_points,
        args.radius,
        args.quadrature,
        args.seed,
        args.draws,
    )
    degree = {
        name: data[0].num_edges / data[0].num_nodes for name, data in sets.items()
    }
    print(
        f"{args.operator}: {len(train)} training samples of {args.num_points} points; "
        f"radius {args.radius}, mean degree "
        + ", ".join(f"{k} {v:.0f}" for k, v in degree.items())
        + f"; data in {time.perf_counter() - start:.1f}s",
        flush=True,
    )
    model = build_model(args)
    print(f"OperatorNet: {count_parameters(model)} parameters", flush=True)
    info = fit(
        model,
        train,
        args.steps,
        args.batch_size,
        args.lr,
        args.seed,
        log_every=max(args.steps // 5, 1),
    )
    errors = evaluate(model, sets)
    floor = None
    if args.operator == "smoothing":
        floor = quadrature_floor(sets, IrregularOperatorTask().sigma)
    base = errors["train res"]
    print(f"trained {args.steps} steps in {info['seconds']:.0f}s")
    header = f"{'test set':<14}{'rel. L2':>9}{'vs train res':>14}"
    print(header + ("  known-kernel quadrature" if floor else ""))
    for name, err in errors.items():
        line = f"{name:<14}{err:>9.4f}{err / base - 1:>+13.1%}"
        print(line + (f"{floor[name]:>25.4f}" if floor else ""))
    result = {
        "operator": args.operator,
        "parameters": count_parameters(model),
        "degree": degree,
        "train": info,
        "errors": errors,
        "quadrature_floor": floor,
        "args": vars(args),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
