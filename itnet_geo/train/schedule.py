r"""Learning-rate schedule: linear warm-up, then a cosine that can be re-targeted."""

from __future__ import annotations

import math
from typing import Any


class WarmupCosine:
    r"""Linear warm-up to :obj:`base_lr`, then cosine decay to ``min_ratio * base_lr``.

    .. math::
        \eta(s) = \begin{cases}
            \eta_0 \frac{s + 1}{W} & s < W \\
            \eta_{\min} + \tfrac12 (\eta_0 - \eta_{\min})(1 + \cos \pi p(s)) & s \ge W
        \end{cases}

    with :math:`p(s)` running linearly from :math:`p_a` at the anchor step
    :math:`s_a` (initially :math:`W`, :math:`p_a = 0`) to 1 at the last step
    :math:`T - 1`. :meth:`retarget` moves the end :math:`T` (a time-budgeted run
    that re-plans) and re-anchors at the current step, so the learning rate stays
    continuous and the cosine still ends at :math:`\eta_{\min}` on the new last step.

    The state (:meth:`state_dict`) is plain numbers, so it goes into a checkpoint
    that loads with ``torch.load(weights_only=True)``.

    Args:
        base_lr (float): Peak learning rate :math:`\eta_0`.
        total_steps (int): Number of optimiser steps :math:`T`.
        warmup_steps (int, optional): Warm-up length :math:`W`, clamped to
            ``total_steps - 1``. (default: :obj:`0`)
        min_ratio (float, optional): :math:`\eta_{\min} / \eta_0`.
            (default: :obj:`0.01`)

    Example:
        >>> sched = WarmupCosine(1.0, total_steps=10, warmup_steps=2, min_ratio=0.0)
        >>> [round(sched.lr(s), 3) for s in (0, 1, 2, 9)]
        [0.5, 1.0, 1.0, 0.0]
    """

    def __init__(
        self,
        base_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        min_ratio: float = 0.01,
    ):
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(warmup_steps, total_steps - 1))
        self.min_ratio = float(min_ratio)
        self.anchor_step = self.warmup_steps
        self.anchor_progress = 0.0

    def progress(self, step: int) -> float:
        r"""Position :math:`p(s) \in [0, 1]` on the cosine (0 during warm-up)."""
        if step < self.anchor_step:
            return self.anchor_progress if step >= self.warmup_steps else 0.0
        span = self.total_steps - 1 - self.anchor_step
        if span <= 0:
            return 1.0
        frac = min(1.0, (step - self.anchor_step) / span)
        return self.anchor_progress + (1.0 - self.anchor_progress) * frac

    def lr(self, step: int) -> float:
        r"""Learning rate of optimiser step :obj:`step` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        lo = self.base_lr * self.min_ratio
        p = self.progress(step)
        return lo + 0.5 * (self.base_lr - lo) * (1.0 + math.cos(math.pi * p))

    def retarget(self, step: int, total_steps: int) -> None:
        r"""Make :obj:`total_steps` the new end, from step :obj:`step` on.

        During warm-up only the end moves; afterwards the cosine is re-anchored at
        :obj:`step` so :math:`\eta` is continuous.
        """
        total_steps = max(int(total_steps), step + 1)
        if step > self.warmup_steps:
            self.anchor_progress = self.progress(step)
            self.anchor_step = step
        self.total_steps = total_steps
        if self.warmup_steps > total_steps - 1:
            # Only reachable while still warming up: nothing was anchored yet.
            self.warmup_steps = total_steps - 1
            self.anchor_step = self.warmup_steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_ratio": self.min_ratio,
            "anchor_step": self.anchor_step,
            "anchor_progress": self.anchor_progress,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])
        self.total_steps = int(state["total_steps"])
        self.warmup_steps = int(state["warmup_steps"])
        self.min_ratio = float(state["min_ratio"])
        self.anchor_step = int(state["anchor_step"])
        self.anchor_progress = float(state["anchor_progress"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_lr={self.base_lr:g}, "
            f"total_steps={self.total_steps}, warmup_steps={self.warmup_steps}, "
            f"min_ratio={self.min_ratio:g})"
        )
