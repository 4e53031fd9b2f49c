"""Point layers side by side: time and peak memory of forward + backward.

Every layer runs in a fresh subprocess on the same inputs (uniform points in the
unit cube, a k-NN graph, random features); the subprocess reports the median
time of ``--repeat`` forward + backward passes and its peak resident memory
growth over the baseline after loading inputs and building the layer. Peers:
PyG PointTransformerConv, EdgeConv, PointNetConv, neuraloperator's
IntegralTransform (``pip install neuraloperator==2.0.0``; reported as missing
otherwise), a naive MLP kernel + ``index_add`` and ITConv on the reference and
the fused path (eager, and with its neighbourhood sums through torch.compile).

    python benchmarks/layers.py                 # N = 16,384
    python benchmarks/layers.py --scale         # adds 65k, 262k, 1M points

Writes ``benchmarks/results/layers.json`` and ``layers.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LIMIT_GIB = 20  # address-space cap per subprocess, so a peer fails instead of the box

LAYERS = [
    "pyg_point_transformer",
    "pyg_edge_conv",
    "pyg_point_net",
    "neuralop_integral_transform",
    "naive_mlp_kernel",
    "itconv_reference",
    "itconv_fused",
    "itconv_fused_compiled",
]
LABELS = {
    "pyg_point_transformer": "PyG PointTransformerConv (MLP pos_nn, attn_nn)",
    "pyg_edge_conv": "PyG EdgeConv (max)",
    "pyg_point_net": "PyG PointNetConv (max)",
    "neuralop_integral_transform": "neuraloperator IntegralTransform (linear)",
    "naive_mlp_kernel": "naive MLP kernel (dp, f_i, f_j) + index_add",
    "itconv_reference": "ITConv reference (MessagePassing)",
    "itconv_fused": "ITConv fused (tiled)",
    "itconv_fused_compiled": "ITConv fused, neighbourhood sums compiled",
}


def _mlp(*sizes):
    import torch.nn as nn

    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def build(name: str, channels: int, hidden: int, tile_size: int):
    """Return ``run(x, pos, edge_index) -> Tensor`` for one layer."""
    import torch

    c, h = channels, hidden
    if name == "pyg_point_transformer":
        from torch_geometric.nn import PointTransformerConv

        m = PointTransformerConv(c, c, pos_nn=_mlp(3, h, c), attn_nn=_mlp(c, h, c))
        return m, lambda x, pos, ei: m(x, pos, ei)
    if name == "pyg_edge_conv":
        from torch_geometric.nn import EdgeConv

        m = EdgeConv(_mlp(2 * c, h, c), aggr="max")
        return m, lambda x, pos, ei: m(x, ei)
    if name == "pyg_point_net":
        from torch_geometric.nn import PointNetConv

        m = PointNetConv(_mlp(c + 3, h, c), add_self_loops=False)
        return m, lambda x, pos, ei: m(x, pos, ei)
    if name == "neuralop_integral_transform":
        from neuralop.layers.integral_transform import IntegralTransform

        from itnet_geo.typing import WITH_TORCH_SCATTER

        m = IntegralTransform(
            channel_mlp_layers=[6, h, c],
            transform_type="linear",
            use_torch_scatter=WITH_TORCH_SCATTER,
        )
        cache = {}

        def run(x, pos, ei):
            if "nbr" not in cache:  # CSR neighbours, built once like NeighborSearch
                from itnet_geo.ops.fused import csr_order

                _, col, _, rowptr = csr_order(ei, pos.size(0))
                cache["nbr"] = {
                    "neighbors_index": col,
                    "neighbors_row_splits": rowptr,
                }
            return m(pos, cache["nbr"], f_y=x)

        return m, run
    if name == "naive_mlp_kernel":
        kernel = _mlp(3 + 2 * c, h, c)
        value = torch.nn.Linear(c, c, bias=False)
        m = torch.nn.ModuleList([kernel, value])

        def run(x, pos, ei):
            j, i = ei
            feats = torch.cat([pos[j] - pos[i], x[i], x[j]], dim=-1)
            msg = kernel(feats) * value(x)[j]
            return torch.zeros_like(x).index_add_(0, i, msg)

        return m, run
    if name.startswith("itconv_"):
        from itnet_geo.nn import ITConv
        from itnet_geo.ops import set_compile

        if name == "itconv_fused_compiled" and not set_compile(True):
            raise ImportError(name="a working torch.compile")
        fused = name != "itconv_reference"
        m = ITConv(c, c, hidden=h, tile_size=tile_size if fused else None)
        return m, lambda x, pos, ei: m(x, pos, ei)
    raise ValueError(f"unknown layer {name!r}")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRSS:
    """Samples the resident set size in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.002):
        import threading

        self.interval = interval
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def child(args) -> None:
    """Measure one layer; prints one JSON line."""
    import gc

    import torch

    torch.set_num_threads(args.threads)
    data = torch.load(args.inputs, weights_only=True)
    x, pos, edge_index = data["x"], data["pos"], data["edge_index"]
    torch.manual_seed(0)
    try:
        module, run = build(args.layer, x.size(1), args.hidden, args.tile_size)
    except ImportError as error:
        print(json.dumps({"status": f"not installed ({error.name})"}))
        return
    x.requires_grad_()

    def step():
        start = time.perf_counter()
        out = run(x, pos, edge_index)
        out.square().mean().backward()
        elapsed = time.perf_counter() - start
        module.zero_grad(set_to_none=True)
        x.grad = None
        return elapsed

    times = []
    try:
        if args.warmup:  # lazy imports and one-off caches stay out of the numbers
            step()
        gc.collect()
        base = _rss_mib()
        with _PeakRSS() as rss:
            for _ in range(args.repeat):
                times.append(step())
    except (RuntimeError, MemoryError) as error:
        if "memory" in str(error).lower() or isinstance(error, MemoryError):
            print(json.dumps({"status": f"out of memory (> {LIMIT_GIB} GiB)"}))
            return
        raise
    print(
        json.dumps(
            {
                "status": "ok",
                "time_s": statistics.median(times),
                "peak_mib": rss.peak - base,
            }
        )
    )


def make_inputs(num_points: int, k: int, channels: int, path: Path) -> None:
    import torch

    from itnet_geo.ops import knn_graph

    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(num_points, 3, generator=gen)
    x = torch.randn(num_points, channels, generator=gen)
    edge_index = knn_graph(pos, k=k, loop=False)
    torch.save({"x": x, "pos": pos, "edge_index": edge_index}, path)


def _child(cmd: list[str], env: dict, timeout: float) -> dict:
    def limit():
        cap = LIMIT_GIB * 1024**3
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (> {timeout:.0f} s)"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        if proc.returncode < 0 or "memory" in tail.lower():
            return {"status": f"out of memory (> {LIMIT_GIB} GiB)"}
        return {"status": f"failed: {tail[:120]}"}
    return json.loads(lines[-1])


def run_row(layer: str, inputs: Path, args, repeat: int, timeout: float) -> dict:
    """Time in one fresh process, peak memory in another.

    The memory run fixes glibc's mmap threshold so that every large tensor goes
    back to the OS when freed and the resident set follows live memory (peaks
    are not hidden by reuse); that slows allocation-heavy code, so the timed
    run keeps the default allocator.
    """
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--layer",
        layer,
        "--inputs",
        str(inputs),
        "--hidden",
        str(args.hidden),
        "--tile-size",
        str(args.tile_size),
        "--threads",
        str(args.threads),
    ]
    warm = ["--warmup"] if repeat > 1 else []
    timed = _child(cmd + ["--repeat", str(repeat)] + warm, dict(os.environ), timeout)
    if timed["status"] != "ok":
        return timed
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    memory = _child(cmd + ["--repeat", "1"] + warm, env, timeout)
    if memory["status"] != "ok":
        return memory
    return {"status": "ok", "time_s": timed["time_s"], "peak_mib": memory["peak_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--num-points", type=int, default=16384)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--tile-size", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", action="store_true", help="add 65k/262k/1M rows")
    parser.add_argument("--layers", nargs="*", default=LAYERS, choices=LAYERS)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    # child mode
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layer", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sizes = [args.num_points] + ([65536, 262144, 1048576] if args.scale else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            inputs = Path(tmp) / f"inputs_{n}.pt"
            make_inputs(n, args.k, args.channels, inputs)
            repeat = args.repeat if n == args.num_points else 1
            for layer in args.layers:
                result = run_row(layer, inputs, args, repeat, args.timeout)
                result.update(layer=layer, num_points=n)
                rows.append(result)
                shown = (
                    f"{result['time_s']:.3f} s  {result['peak_mib']:.0f} MiB"
                    if result["status"] == "ok"
                    else result["status"]
                )
                print(f"N={n:>8}  {LABELS[layer]:<50} {shown}", flush=True)

    for n in sizes:
        ref = next(
            (
                r
                for r in rows
                if r["num_points"] == n
                and r["layer"] == "itconv_fused"
                and r["status"] == "ok"
            ),
            None,
        )
        for r in rows:
            if r["num_points"] == n and r["status"] == "ok" and ref is not None:
                r["time_vs_fused"] = r["time_s"] / ref["time_s"]
                r["memory_vs_fused"] = r["peak_mib"] / max(ref["peak_mib"], 1e-9)

    fused = [r for r in rows if r["layer"] == "itconv_fused" and r["status"] == "ok"]
    slope = None
    if len(fused) >= 2:
        xs = [r["num_points"] / 1e6 for r in fused]
        ys = [r["peak_mib"] for r in fused]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sum(
            (a - mx) ** 2 for a in xs
        )

    import torch

    meta = {
        "command": "python benchmarks/layers.py" + (" --scale" if args.scale else ""),
        "k": args.k,
        "channels": args.channels,
        "hidden": args.hidden,
        "tile_size": args.tile_size,
        "threads": args.threads,
        "repeat": args.repeat,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "fused_peak_mib_per_million_points": slope,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layers.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2)
    )
    lines = [
        f"Forward + backward, k = {args.k}, C = {args.channels}, "
        f"hidden = {args.hidden}, {args.threads} threads, median of {args.repeat} "
        "(scale rows: 1 run), in a fresh process per row; peak RSS growth over "
        "the resident set before the run, sampled every 2 ms in a second fresh "
        "process with a fixed mmap threshold. "
        "Ratios are to ITConv fused at the same N.",
        "",
        "| N | layer | time | peak memory | time / fused | memory / fused |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "ok":
            cells = [
                f"{r['time_s']:.3f} s",
                f"{r['peak_mib']:.0f} MiB",
                f"{r.get('time_vs_fused', float('nan')):.2f}x",
                f"{r.get('memory_vs_fused', float('nan')):.1f}x",
            ]
        else:
            cells = [r["status"], "", "", ""]
        lines.append(
            f"| {r['num_points']:,} | {LABELS[r['layer']]} | "
            + " | ".join(cells)
            + " |"
        )
    if slope is not None:
        lines += [
            "",
            f"ITConv fused peak memory slope: {slope:.0f} MiB per million points.",
        ]
    (args.out / "layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
