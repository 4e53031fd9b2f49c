"""What the benchmark scripts share: environment record, result files, peak memory."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import itnet_geo

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    """Machine, library versions and date, for a report's header."""
    return {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "torch": torch.__version__,
        "itnet_geo": itnet_geo.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_results(name: str, report: dict, text: str) -> Path:
    """``results/<name>.json`` and ``results/<name>.md``; the folder."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(text)
    print(f"wrote {RESULTS / name}.json and {name}.md")
    return RESULTS


def peak_tensor_bytes(fn) -> int:
    """Peak of live CPU tensor memory while fn runs (profiler memory events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak
