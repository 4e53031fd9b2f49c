r"""Classification metrics from a confusion matrix."""

from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    r"""Count matrix ``C[t, p]``: how many samples of class ``t`` were predicted ``p``.

    Args:
        pred (torch.Tensor): Predicted labels.
        target (torch.Tensor): True labels.
        num_classes (int): Number of classes :math:`K`.

    Shapes:
        - **pred**, **target:** :math:`(N,)`
        - **output:** :math:`(K, K)`, ``torch.long``

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
        tensor([[1, 1],
                [0, 1]])
    """
    pred = pred.reshape(-1).long().cpu()
    target = target.reshape(-1).long().cpu()
    if pred.numel() != target.numel():
        raise ValueError(f"pred has {pred.numel()} labels, target {target.numel()}")
    index = target * num_classes + pred
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def overall_accuracy(confusion: Tensor) -> float:
    r"""Fraction of correct predictions (0 for an empty matrix)."""
    total = int(confusion.sum())
    return float(confusion.diagonal().sum()) / total if total else 0.0


def class_accuracy(confusion: Tensor) -> float:
    r"""Mean over the classes present in the targets of the per-class recall.

    Classes without a sample do not count (a validation split may lack some).
    """
    support = confusion.sum(dim=1)
    present = support > 0
    if not bool(present.any()):
        return 0.0
    recall = confusion.diagonal()[present].double() / support[present].double()
    return float(recall.mean())


__all__ = ["confusion_matrix", "overall_accuracy", "class_accuracy"]
