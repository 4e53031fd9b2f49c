r"""Evaluation: loss, overall and mean class accuracy, confusion matrix, voting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

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
    """

    loss: float
    accuracy: float
    class_accuracy: float
    n: int
    confusion: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "class_accuracy": self.class_accuracy,
            "n": self.n,
            "loss": self.loss,
        }


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
    finally:
        net.train(was_training)
    all_reduce_sum(confusion)
    all_reduce_sum(loss_sum)
    n = int(confusion.sum())
    return EvalResult(
        loss=float(loss_sum) / n if n else float("nan"),
        accuracy=overall_accuracy(confusion),
        class_accuracy=class_accuracy(confusion),
        n=n,
        confusion=confusion,
    )


__all__ = ["EvalResult", "evaluate"]
