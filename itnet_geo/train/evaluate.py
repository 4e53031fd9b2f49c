r"""Evaluation: loss, overall and mean class accuracy, confusion matrix, voting."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from itnet_geo._atomic import atomic_open
from itnet_geo.datasets.modelnet import TEST_COUNTS
from itnet_geo.train.checkpoint import unwrap
from itnet_geo.train.distributed import all_reduce_sum
from itnet_geo.train.metrics import class_accuracy, confusion_matrix, overall_accuracy


@dataclass
class EvalResult:
    r"""What :func:`evaluate` measured.

    Attributes:
        loss (float): Mean cross-entropy of the (vote-averaged) logits.
        accuracy (float): Overall accuracy.
        class_accuracy (float): Mean over classes of the per-class accuracy.
        n (int): Number of shapes.
        confusion (torch.Tensor): ``(K, K)`` counts, true class down.
        targets (torch.Tensor): ``(M,)`` true class of each shape this process
            scored, in loader order (:math:`M = n` without torch.distributed).
        predictions (torch.Tensor): ``(M,)`` predicted class of each.
        confidence (torch.Tensor): ``(M,)`` softmax probability of the
            prediction.
        weighted_accuracy (float, optional): Per-class accuracies averaged
            with class weights (:func:`~itnet_geo.train.weighted_accuracy`),
            when some were given.
    """

    loss: float
    accuracy: float
    class_accuracy: float
    n: int
    confusion: Tensor
    targets: Tensor
    predictions: Tensor
    confidence: Tensor
    weighted_accuracy: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "accuracy": self.accuracy,
            "class_accuracy": self.class_accuracy,
            "n": self.n,
            "loss": self.loss,
        }
        if self.weighted_accuracy is not None:
            out["weighted_accuracy"] = self.weighted_accuracy
        return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    votes: int = 1,
    vote_transform: Optional[Callable] = None,
    label_map: Optional[Tensor] = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    desc: str = "eval",
    prepare: Optional[Callable] = None,
) -> EvalResult:
    r"""Evaluate :obj:`model` on every batch of :obj:`loader`.

    With :obj:`votes` :math:`V > 1` the logits are averaged over :math:`V` copies
    of each batch: the batch itself and :math:`V - 1` copies passed through
    :obj:`vote_transform` (random rotation / scaling).

    Under torch.distributed each rank passes its shard of the data; the counts and
    losses are summed over ranks, so every rank returns the full result.

    Args:
        model (torch.nn.Module): Maps a batch to ``(B, K)`` logits (a DDP wrapper
            is unwrapped).
        loader (iterable): Batches with ``y``.
        num_classes (int): :math:`K`.
        votes (int, optional): Copies to average. (default: :obj:`1`)
        vote_transform (callable, optional): Augmentation of the extra copies.
            (default: :obj:`None`)
        label_map (torch.Tensor, optional): Maps the loader's labels to the
            model's outputs (datasets whose classes are a subset or reordering).
            (default: :obj:`None`)
        device (torch.device or str, optional): Where to run. (default: ``"cpu"``)
        progress (bool, optional): Show a progress bar. (default: :obj:`False`)
        desc (str, optional): Progress-bar label. (default: ``"eval"``)
        prepare (callable, optional): Applied to each batch (and vote copy)
            right before the model, e.g. :meth:`DataSpec.prepare`.
            (default: :obj:`None`)
    """
    if votes < 1:
        raise ValueError(f"votes must be at least 1, got {votes}")
    if votes > 1 and vote_transform is None:
        raise ValueError("votes > 1 needs a vote_transform")
    net = unwrap(model)
    was_training = net.training
    net.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum = torch.zeros(1, dtype=torch.float64)
    targets: list[Tensor] = []
    probs: list[Tensor] = []
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
            batch = batch.to(device)
            y = batch.y.view(-1)
            if label_map is not None:
                y = label_map.to(y.device)[y]

            def run(b: Any) -> Tensor:
                return net(b if prepare is None else prepare(b)).float()

            logits = run(batch.clone() if prepare is not None else batch)
            for _ in range(votes - 1):
                logits = logits + run(vote_transform(batch.clone()))
            logits = logits / votes
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            confusion += confusion_matrix(logits.argmax(dim=-1), y, num_classes)
            targets.append(y.cpu())
            probs.append(logits.softmax(dim=-1).cpu())
    finally:
        net.train(was_training)
    all_reduce_sum(confusion)
    all_reduce_sum(loss_sum)
    n = int(confusion.sum())
    prob = torch.cat(probs) if probs else torch.zeros(0, num_classes)
    confidence, predictions = prob.max(dim=-1)
    return EvalResult(
        loss=float(loss_sum) / n if n else float("nan"),
        accuracy=overall_accuracy(confusion),
        class_accuracy=class_accuracy(confusion),
        n=n,
        confusion=confusion,
        targets=torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        predictions=predictions,
        confidence=confidence,
    )


def write_predictions(
    path: str | os.PathLike,
    names: Sequence[str],
    classes: Sequence[str],
    targets: Tensor,
    predictions: Tensor,
    confidence: Tensor,
) -> int:
    r"""Write one CSV row per shape: its name, true and predicted class, confidence.

    Columns ``name,label,prediction,confidence,correct``; the file is written to
    a temporary name and renamed, so a crash leaves no half-written table.

    Args:
        path (str or os.PathLike): The CSV file.
        names (sequence of str): Per shape, its name (e.g. its file; see
            :func:`~itnet_geo.train.shape_names`).
        classes (sequence of str): Class names, indexed by the labels.
        targets (torch.Tensor): ``(M,)`` true classes.
        predictions (torch.Tensor): ``(M,)`` predicted classes.
        confidence (torch.Tensor): ``(M,)`` probabilities of the predictions.

    Returns:
        int: The number of misclassified shapes.
    """
    if not len(names) == len(targets) == len(predictions) == len(confidence):
        raise ValueError(
            f"{len(names)} names for {len(targets)} targets, {len(predictions)} "
            f"predictions and {len(confidence)} confidences"
        )
    misses = 0
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")  # greppable: ",0$"
        writer.writerow(["name", "label", "prediction", "confidence", "correct"])
        for name, t, p, c in zip(
            names,
            targets.tolist(),
            predictions.tolist(),
            confidence.tolist(),
            strict=True,
        ):
            misses += t != p
            writer.writerow([name, classes[t], classes[p], f"{c:.4f}", int(t == p)])
    return misses


#: Class weights known by name (:func:`read_class_weights`): the class sizes of
#: the official ModelNet test splits.
NAMED_CLASS_WEIGHTS: dict[str, dict[str, int]] = {
    f"modelnet{name}-test": counts for name, counts in TEST_COUNTS.items()
}


def read_class_weights(source: str | os.PathLike) -> dict[str, float]:
    r"""Class weights by class name, by name or from a JSON file.

    Args:
        source (str or os.PathLike): One of :data:`NAMED_CLASS_WEIGHTS`
            (``"modelnet40-test"``, ``"modelnet10-test"``: shapes per class in
            the official test split), or a JSON file holding an object
            ``{"class": weight, ...}`` of finite non-negative numbers.

    Raises:
        ValueError: A file that does not exist, is not JSON or does not hold
            such an object; the message names the file and what was wrong.

    Example:
        >>> read_class_weights("modelnet10-test")["night_stand"]
        86.0
    """
    key = os.fspath(source)
    if key in NAMED_CLASS_WEIGHTS:
        return {c: float(w) for c, w in NAMED_CLASS_WEIGHTS[key].items()}
    path = Path(source)
    if not path.is_file():
        raise ValueError(
            f"class weights {key!r} are neither a file nor one of "
            f"{', '.join(NAMED_CLASS_WEIGHTS)}"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"class weights {path} are not JSON: {err}") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            f'class weights {path} must hold a JSON object {{"class": weight, ...}}, '
            f"got {type(raw).__name__}{' (empty)' if raw == {} else ''}"
        )
    weights = {}
    for name, value in raw.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"class weights {path}: the weight of {name!r} is {value!r}, "
                "not a finite non-negative number"
            )
        weights[str(name)] = float(value)
    return weights


__all__ = [
    "EvalResult",
    "evaluate",
    "write_predictions",
    "read_class_weights",
    "NAMED_CLASS_WEIGHTS",
]
