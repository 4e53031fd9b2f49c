r"""Side-by-side comparison of training runs: a table and one PNG.

Runs of different recipes are compared at equal training (the best validation
accuracy within the epochs all of them have reached, and the accuracy at that
epoch) as well as at their end, and plotted against epochs and against wall time
(accuracy per CPU-hour being what a recipe costs here). A run is read from its
directory (``metrics.jsonl``), from that file, or from a ``last.pt`` checkpoint,
which carries the history of every epoch so far.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from itnet_geo.train.checkpoint import CheckpointError, load_checkpoint
from itnet_geo.train.loop import LAST_FILE, METRICS_FILE
from itnet_geo.train.plots import _figure, _save


def load_history(source: str | os.PathLike) -> list[dict[str, Any]]:
    r"""The per-epoch records of a run.

    Args:
        source (str or os.PathLike): A run directory (its ``metrics.jsonl``), a
            ``metrics.jsonl`` file, or a ``last.pt`` checkpoint (its
            ``history``).

    Raises:
        FileNotFoundError: :obj:`source` does not exist, or a directory holds no
            ``metrics.jsonl``.
        ValueError: A line that is not a JSON object with an ``epoch`` (the
            message names the file and the line), or a run with no epoch.
        CheckpointError: An unreadable checkpoint, or one without history
            (``best.pt`` keeps the model only).
    """
    path = Path(source)
    if path.is_dir():
        path = path / METRICS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{source}: no {METRICS_FILE} in this directory (is it a run "
                "directory of `itnet-geo train`?)"
            )
    elif not path.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if path.suffix == ".pt":
        ckpt = load_checkpoint(path)
        history = ckpt.get("history")
        if not history:
            raise CheckpointError(
                f"checkpoint {path} carries no training history ({ckpt.get('kind')!r} "
                "checkpoint; a run's last.pt or metrics.jsonl has it)"
            )
        records = [dict(record) for record in history]
    else:
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(
                        f"{path}, line {number}: not JSON ({err.msg}, column "
                        f"{err.colno})"
                    ) from None
                if not isinstance(record, dict) or "epoch" not in record:
                    raise ValueError(
                        f"{path}, line {number}: expected a JSON object with an "
                        f"'epoch', got {line.strip()[:60]!r}"
                    )
                records.append(record)
    if not records:
        raise ValueError(f"{path}: no epoch recorded yet")
    return records


def run_clock(history: Sequence[Mapping[str, Any]]) -> list[Optional[float]]:
    r"""Each record's ``elapsed`` (seconds), made to count every session.

    Runs resumed by itnet_geo releases older than the run clock restarted it at
    zero in each session; a clock that goes back is read as such a restart and
    continued from the previous record's value. Records without ``elapsed``
    give :obj:`None`.
    """
    clock: list[Optional[float]] = []
    offset, previous = 0.0, None
    for record in history:
        value = record.get("elapsed")
        if value is None:
            clock.append(None)
            continue
        value = float(value)
        if previous is not None and value + offset < previous:
            offset = previous  # a restarted clock: this session's time on top
        previous = value + offset
        clock.append(previous)
    return clock


def _accuracies(history: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
    return [
        (int(h["epoch"]), float(h["val_acc"]))
        for h in history
        if h.get("val_acc") is not None
    ]


def _best(history: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    def key(h: Mapping[str, Any]) -> tuple[float, float, int]:
        loss = h.get("val_loss")
        return (
            float(h["val_acc"]),
            -float(loss) if loss is not None else 0.0,
            -h["epoch"],
        )

    best = max((h for h in history if h.get("val_acc") is not None), key=key)
    return int(best["epoch"]), float(best["val_acc"])


def summarize(
    history: Sequence[Mapping[str, Any]], last: int = 10, at_epoch: Optional[int] = None
) -> dict[str, Any]:
    r"""What a run reached, from its :func:`load_history` records.

    Args:
        history: The run's records.
        last (int): The mean validation accuracy is taken over the last
            :obj:`last` validated epochs.
        at_epoch (int, optional): Also report the best validation accuracy
            within epochs ``1..at_epoch`` and the accuracy at :obj:`at_epoch`
            (comparing runs at equal training).

    Returns:
        dict: ``epochs``, ``hours`` (run clock, all sessions), ``best``
        (accuracy) and ``best_epoch`` (chosen as training chooses ``best.pt``:
        the highest accuracy, then the lowest loss, then the earliest),
        ``mean_last`` (over ``last_epochs`` epochs), ``final`` (the last
        validated epoch's accuracy), ``clouds_per_s`` (median), and with
        :obj:`at_epoch` ``at_epoch``, ``best_at`` and ``acc_at``. Accuracies
        are fractions, :obj:`None` when the run has no validation split.
    """
    if last < 1:
        raise ValueError(f"last must be at least 1, got {last}")
    acc = _accuracies(history)
    speeds = sorted(
        float(h["clouds_per_s"]) for h in history if h.get("clouds_per_s") is not None
    )
    out: dict[str, Any] = {
        "epochs": int(history[-1]["epoch"]),
        "hours": (run_clock(history)[-1] or 0.0) / 3600.0,
        "best": None,
        "best_epoch": None,
        "mean_last": None,
        "last_epochs": 0,
        "final": None,
        "clouds_per_s": speeds[len(speeds) // 2] if speeds else None,
    }
    if acc:
        best_epoch, best = _best(history)
        tail = acc[-last:]
        out.update(
            best=best,
            best_epoch=best_epoch,
            mean_last=sum(a for _, a in tail) / len(tail),
            last_epochs=len(tail),
            final=acc[-1][1],
        )
    if at_epoch is not None:
        upto = [a for e, a in acc if e <= at_epoch]
        exact = [a for e, a in acc if e == at_epoch]
        out.update(
            at_epoch=at_epoch,
            best_at=max(upto) if upto else None,
            acc_at=exact[0] if exact else None,
        )
    return out


def _labels(sources: Sequence[str | os.PathLike]) -> list[str]:
    def name(source: str | os.PathLike) -> str:
        path = Path(source).resolve()
        if path.name in (METRICS_FILE, LAST_FILE):  # named by its run directory
            return path.parent.name
        for suffix in ("." + METRICS_FILE, ".jsonl", ".pt"):  # X.metrics.jsonl: X
            if path.is_file() and path.name.endswith(suffix):
                return path.name[: -len(suffix)]
        return path.name

    labels = [name(s) for s in sources]
    if len(set(labels)) < len(labels):  # two runs of one name: their paths
        labels = [str(s) for s in sources]
    return labels


def plot_comparison(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike
) -> Path:
    r"""Validation accuracy against epoch and against hours, and training loss.

    One line per run (keyed by its label), in three panels.

    Returns:
        pathlib.Path: The PNG written (atomically).
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure(13, 3.8)
    by_epoch, by_hour, loss = fig.subplots(1, 3)
    # The interesting range is the top: the accuracy axes start near the runs'
    # values after their first quarter rather than at the first epoch's.
    lows: list[float] = []
    for label, history in histories.items():
        acc = [
            (int(h["epoch"]), 100 * float(h["val_acc"]), t)
            for h, t in zip(history, run_clock(history), strict=True)
            if h.get("val_acc") is not None
        ]
        lows += [a for _, a, _ in acc[len(acc) // 4 :]]
        (line,) = by_epoch.plot(
            [e for e, _, _ in acc], [a for _, a, _ in acc], label=label, linewidth=1.2
        )
        timed = [(t / 3600.0, a) for _, a, t in acc if t is not None]
        if timed:
            by_hour.plot(*zip(*timed, strict=True), color=line.get_color(), label=label)
        train = [
            (int(h["epoch"]), float(h["train_loss"]))
            for h in history
            if h.get("train_loss") is not None and math.isfinite(h["train_loss"])
        ]
        if train:
            loss.plot(*zip(*train, strict=True), color=line.get_color(), label=label)
    by_epoch.set_title("validation accuracy (%)")
    by_epoch.set_xlabel("epoch")
    by_hour.set_title("validation accuracy (%) against wall time")
    by_hour.set_xlabel("hours (run clock, all sessions)")
    loss.set_title("training loss")
    loss.set_xlabel("epoch")
    for ax in (by_epoch, by_hour, loss):
        ax.grid(alpha=0.3)
        if ax is not by_hour:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_lines():
            ax.legend(fontsize=8)
    if lows:
        for ax in (by_epoch, by_hour):
            top = ax.get_ylim()[1]
            ax.set_ylim(max(0.0, min(lows) - 2.0), top)
    fig.tight_layout()
    return _save(fig, path)


def compare_runs(
    sources: Sequence[str | os.PathLike],
    out: Optional[str | os.PathLike] = None,
    last: int = 10,
    at_epoch: Optional[int] = None,
    labels: Optional[Sequence[str]] = None,
) -> list[dict[str, Any]]:
    r"""Summaries of several runs side by side, and optionally their plot.

    Args:
        sources: Runs (see :func:`load_history`).
        out (str or os.PathLike, optional): Write :func:`plot_comparison` there.
        last (int): Epochs of the ``mean_last`` column.
        at_epoch (int, optional): The epoch to compare at; default the last
            epoch every run has reached.
        labels (list[str], optional): One name per run (default the run
            directories' names).

    Returns:
        list[dict]: One :func:`summarize` per run, with its ``run`` label.
    """
    if not sources:
        raise ValueError("nothing to compare: no runs given")
    if labels is None:
        labels = _labels(sources)
    elif len(labels) != len(sources):
        raise ValueError(f"{len(labels)} labels for {len(sources)} runs")
    if len(set(labels)) < len(labels):
        raise ValueError(f"labels must differ, got {list(labels)}")
    histories = {
        label: load_history(s) for label, s in zip(labels, sources, strict=True)
    }
    if at_epoch is None:
        at_epoch = min(int(h[-1]["epoch"]) for h in histories.values())
    elif at_epoch < 1:
        raise ValueError(f"at_epoch must be at least 1, got {at_epoch}")
    rows = [
        {"run": label, **summarize(h, last=last, at_epoch=at_epoch)}
        for label, h in histories.items()
    ]
    if out is not None:
        plot_comparison(histories, out)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    r"""A Markdown table of :func:`compare_runs` rows (accuracies in %)."""

    def pct(value: Optional[float]) -> str:
        return "–" if value is None else f"{100 * value:.2f}"

    at = rows[0].get("at_epoch") if rows else None
    head = ["run", "epochs", "hours", "clouds/s", "best val (epoch)"]
    if at is not None:
        head += [f"best ≤ ep {at}", f"val at ep {at}"]
    head += ["mean of last", "final"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best = "–" if r["best"] is None else f"{pct(r['best'])} ({r['best_epoch']})"
        speed = "–" if r["clouds_per_s"] is None else f"{r['clouds_per_s']:.1f}"
        cells = [r["run"], str(r["epochs"]), f"{r['hours']:.2f}", speed, best]
        if at is not None:
            cells += [pct(r.get("best_at")), pct(r.get("acc_at"))]
        mean = pct(r["mean_last"])
        if r["mean_last"] is not None:
            mean += f" ({r['last_epochs']})"
        cells += [mean, pct(r["final"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "compare_runs",
    "format_table",
    "load_history",
    "plot_comparison",
    "run_clock",
    "summarize",
]
