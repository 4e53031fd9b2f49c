r"""Training-curve and confusion-matrix PNGs (matplotlib's Agg canvas, no display)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from itnet_geo._atomic import atomic_open


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
    return path


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    r"""Loss, accuracy and learning rate per epoch from ``metrics.jsonl`` records.

    Plots ``train_loss`` / ``val_loss``, ``train_acc`` / ``val_acc`` /
    ``val_class_acc`` and ``lr`` against ``epoch``, whichever are present.

    Returns:
        pathlib.Path: The PNG written (atomically).
    """
    fig = _figure(12, 3.6)
    axes = fig.subplots(1, 3)
    epochs = [h["epoch"] for h in history]

    def series(ax, key: str, label: str) -> None:
        pts = [
            (e, h[key])
            for e, h in zip(epochs, history, strict=False)
            if h.get(key) is not None
        ]
        if pts:
            ax.plot(*zip(*pts, strict=False), marker="o", markersize=3, label=label)

    series(axes[0], "train_loss", "train")
    series(axes[0], "val_loss", "validation")
    axes[0].set_title("loss")
    series(axes[1], "train_acc", "train")
    series(axes[1], "val_acc", "validation")
    series(axes[1], "val_class_acc", "validation (mean class)")
    axes[1].set_title("accuracy")
    series(axes[2], "lr", "learning rate")
    axes[2].set_title("learning rate")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(
    confusion: Tensor,
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "confusion matrix",
) -> Path:
    r"""Row-normalised confusion matrix (true class down, prediction across).

    Cells hold counts when there are at most 15 classes.

    Returns:
        pathlib.Path: The PNG written (atomically).
    """
    confusion = torch.as_tensor(confusion).cpu()
    k = len(classes)
    if tuple(confusion.shape) != (k, k):
        raise ValueError(f"confusion is {tuple(confusion.shape)}, classes {k}")
    rows = confusion.sum(dim=1, keepdim=True).clamp(min=1)
    norm = (confusion.double() / rows).numpy()
    size = min(4 + 0.28 * k, 18)
    fig = _figure(size + 1.5, size)
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fontsize = 8 if k <= 20 else 6
    ax.set_xticks(range(k), labels=list(classes), rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), labels=list(classes), fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(confusion.sum())
    correct = int(confusion.diagonal().sum())
    acc = correct / total if total else 0.0
    ax.set_title(f"{title} (accuracy {100 * acc:.1f}%, n={total})")
    if k <= 15:
        for i in range(k):
            for j in range(k):
                count = int(confusion[i, j])
                if count:
                    color = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        str(count),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=color,
                    )
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_curves", "plot_confusion"]
