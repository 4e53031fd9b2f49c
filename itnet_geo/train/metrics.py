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


def weighted_accuracy(confusion: Tensor, weights: Tensor) -> float:
    r"""Per-class accuracies averaged with :obj:`weights`.

    .. math::
        \mathrm{acc}_w = \frac{\sum_c w_c \, C_{cc} / \sum_p C_{cp}}{\sum_c w_c}

    With :math:`w_c` the number of shapes of class :math:`c` in another split,
    it is the overall accuracy that split would show if each class kept the
    accuracy measured here; with :math:`w_c = 1` it is :func:`class_accuracy`.

    Args:
        confusion (torch.Tensor): ``(K, K)`` counts, true class down.
        weights (torch.Tensor): ``(K,)`` non-negative weights, not all zero.

    Raises:
        ValueError: Negative or all-zero weights, or a class of positive weight
            with no sample in :obj:`confusion` (its accuracy is unmeasured).

    Example:
        >>> confusion = torch.tensor([[9, 1], [0, 2]])  # 90 % and 100 %
        >>> weighted_accuracy(confusion, torch.tensor([1.0, 3.0]))
        0.975
    """
    weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if weights.numel() != confusion.shape[0]:
        raise ValueError(f"{weights.numel()} weights for {confusion.shape[0]} classes")
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("class weights must be finite and non-negative")
    if float(weights.sum()) <= 0:
        raise ValueError("class weights are all zero")
    support = confusion.sum(dim=1)
    unmeasured = ((weights > 0) & (support == 0)).nonzero().view(-1).tolist()
    if unmeasured:
        raise ValueError(
            f"classes {unmeasured} have weight but no sample to measure them on"
        )
    recall = confusion.diagonal().double() / support.clamp(min=1).double()
    return float((weights * recall).sum() / weights.sum())


__all__ = [
    "confusion_matrix",
    "overall_accuracy",
    "class_accuracy",
    "weighted_accuracy",
]
