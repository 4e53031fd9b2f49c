"""Dense adapters against their classic peers: time and peak memory per row.

* ``SequenceIT`` on the full grid with the ``softmax`` measure (multi-head
  attention: ``"qk"`` kernel, ``heads``) against ``F.scaled_dot_product_attention``
  with the same projections, at growing sequence length L;
* ``ImageIT`` on a 3x3 window (``special.from_conv2d``) against ``nn.Conv2d`` with
  the same weights, at growing H x W.

Every (row, implementation, mode) runs in a fresh subprocess; peak memory is the
growth of the process's peak RSS over its RSS just before the call (the peak is
reset through /proc/self/clear_refs). Modes: ``fwd`` (no grad) and ``fwd+bwd``.
The tiled path's memory is fitted linearly against L (and H x W): the slope is
reported, with the largest/smallest memory ratio next to the size ratio.

    python benchmarks/dense.py            # small sizes, a few minutes on 1 thread
    python benchmarks/dense.py --quick    # two sizes each, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

SEQ = dict(batch=2, embed=64, heads=4, tile_size=64, source_tile=256)
IMG = dict(batch=2, channels=16, kernel=3, tile_size=256)


# ---------------------------------------------------------------- the worker
def _status(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) * 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _build(kind: str, impl: str, size: int):
    """A closure computing the row's output from a fresh input, and the input."""
    import torch
    import torch.nn.functional as F

    from itnet_geo.nn import SequenceIT, special

    torch.manual_seed(0)
    if kind == "seq":
        b, e, h = SEQ["batch"], SEQ["embed"], SEQ["heads"]
        layer = SequenceIT(
            e,
            e,
            grid="full",
            kernel_inputs=("qk",),
            kernel="heads",
            heads=h,
            measure="softmax",
            qk_dim=e // h,
            bias=False,
            tile_size=SEQ["tile_size"],
            source_tile=SEQ["source_tile"],
        )
        x = torch.randn(b, size, e)
        if impl == "it":
            return layer, x

        def sdpa(t):
            def heads(u):
                return u.view(b, size, h, e // h).transpose(1, 2)

            q = heads(layer.kernel_nn.lin_q(t))
            k = heads(layer.kernel_nn.lin_k(t))
            v = heads(layer.lin_value(t))
            out = F.scaled_dot_product_attention(q, k, v)
            return out.transpose(1, 2).reshape(b, size, e)

        return sdpa, x
    b, c, k = IMG["batch"], IMG["channels"], IMG["kernel"]
    conv = torch.nn.Conv2d(c, c, k, padding=k // 2)
    x = torch.randn(b, c, size, size)
    if impl == "it":
        return special.from_conv2d(conv, tile_size=IMG["tile_size"]), x
    return conv, x


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    fn, x = _build(spec["kind"], spec["impl"], spec["size"])
    if spec["mode"] == "check":
        ref, _ = _build(spec["kind"], "peer", spec["size"])
        with torch.no_grad():
            err = (fn(x) - ref(x)).abs().max().item()
        return {"max_abs_diff": err}
    train = spec["mode"] == "fwd+bwd"
    if train:
        x.requires_grad_()

    def run():
        if train:
            fn(x).square().mean().backward()
            x.grad = None
        else:
            with torch.no_grad():
                fn(x)

    rss = _status("VmRSS")
    exact = _reset_peak()
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    peak = _status("VmHWM") - rss
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {
        "time_s": statistics.median(times) if times else first,
        "first_s": first,
        "peak_mb": peak / 2**20,
        "peak_reset": exact,
    }


# ----------------------------------------------------------------- the driver
def _spawn(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(spec["threads"])
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--seq-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048]
    )
    parser.add_argument("--img-sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="two small sizes each")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        args.seq_sizes, args.img_sizes, args.repeats = [128, 256], [16, 32], 1

    rows = []
    common = dict(threads=args.threads, repeats=args.repeats)
    for kind, sizes in (("seq", args.seq_sizes), ("img", args.img_sizes)):
        check = _spawn(dict(common, kind=kind, impl="it", size=sizes[0], mode="check"))
        print(
            f"{kind}: max |IT - peer| at size {sizes[0]}: {check['max_abs_diff']:.2e}"
        )
        for size in sizes:
            for mode in ("fwd", "fwd+bwd"):
                res = {
                    impl: _spawn(
                        dict(common, kind=kind, impl=impl, size=size, mode=mode)
                    )
                    for impl in ("it", "peer")
                }
                row = {
                    "kind": kind,
                    "size": size,
                    "points": size if kind == "seq" else size * size,
                    "mode": mode,
                    "it_time_s": res["it"]["time_s"],
                    "peer_time_s": res["peer"]["time_s"],
                    "it_peak_mb": res["it"]["peak_mb"],
                    "peer_peak_mb": res["peer"]["peak_mb"],
                    "time_ratio": res["it"]["time_s"] / res["peer"]["time_s"],
                    "mem_ratio": res["it"]["peak_mb"]
                    / max(res["peer"]["peak_mb"], 1e-3),
                    "max_abs_diff_at_smallest": check["max_abs_diff"],
                    "peak_reset": res["it"]["peak_reset"] and res["peer"]["peak_reset"],
                }
                rows.append(row)
                print(
                    f"{kind} size={size:5d} {mode:8s} time IT {row['it_time_s']:.4f}s"
                    f" / peer {row['peer_time_s']:.4f}s = x{row['time_ratio']:.1f}"
                    f"  peak IT {row['it_peak_mb']:.1f} MB / peer "
                    f"{row['peer_peak_mb']:.1f} MB = x{row['mem_ratio']:.1f}",
                    flush=True,
                )

    fits = {}
    for kind in ("seq", "img"):
        for mode in ("fwd", "fwd+bwd"):
            sel = [r for r in rows if r["kind"] == kind and r["mode"] == mode]
            if len(sel) < 2:
                continue
            xs = [float(r["points"]) for r in sel]
            ys = [r["it_peak_mb"] for r in sel]
            slope, intercept = _fit(xs, ys)
            fits[f"{kind}/{mode}"] = {
                "slope_mb_per_1k_points": 1000 * slope,
                "intercept_mb": intercept,
                "size_ratio": xs[-1] / xs[0],
                "mem_ratio": ys[-1] / max(ys[0], 1e-3),
            }
            print(
                f"{kind} {mode}: IT peak memory ~ {intercept:.1f} MB + "
                f"{1000 * slope:.2f} MB per 1k points; x{xs[-1] / xs[0]:.0f} points"
                f" -> x{ys[-1] / max(ys[0], 1e-3):.1f} memory"
            )

    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "repeats": args.repeats,
        "seq": SEQ,
        "img": IMG,
        "note": "the CPU is shared with other processes: times are noisy",
    }
    try:
        import torch

        meta["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dense.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "memory_fit": fits}, indent=2)
    )
    lines = [
        "# Dense adapters vs classic peers",
        "",
        f"torch {meta.get('torch')}, {meta['threads']} thread(s), median of "
        f"{meta['repeats']}; {meta['note']}. Peak = growth of peak RSS in a fresh "
        "process. Sequence: B=2, E=64, 4 heads, tile 64 targets x 256 sources "
        "(SequenceIT full + softmax vs scaled_dot_product_attention). Image: B=2, "
        "16->16 channels, 3x3 (ImageIT window = from_conv2d vs nn.Conv2d).",
        "",
        "| layer | size | mode | IT time (s) | peer time (s) | time ratio "
        "| IT peak (MB) | peer peak (MB) | memory ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "SequenceIT / SDPA" if r["kind"] == "seq" else "ImageIT / Conv2d"
        size = f"L={r['size']}" if r["kind"] == "seq" else f"{r['size']}x{r['size']}"
        lines.append(
            f"| {name} | {size} | {r['mode']} | {r['it_time_s']:.4f} | "
            f"{r['peer_time_s']:.4f} | {r['time_ratio']:.1f} | {r['it_peak_mb']:.1f} | "
            f"{r['peer_peak_mb']:.1f} | {r['mem_ratio']:.1f} |"
        )
    lines += [
        "",
        "Linear fit of the IT path's peak memory against the number of points:",
        "",
    ]
    lines += [
        "| layer / mode | MB per 1k points | intercept (MB) | points x | memory x |"
    ]
    lines += ["|---|---|---|---|---|"]
    for key, f in fits.items():
        lines.append(
            f"| {key} | {f['slope_mb_per_1k_points']:.2f} | {f['intercept_mb']:.1f} | "
            f"{f['size_ratio']:.0f} | {f['mem_ratio']:.1f} |"
        )
    (args.out / "dense.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'dense.json'} and {args.out / 'dense.md'}")


if __name__ == "__main__":
    main()
