r"""Time budgets: parse ``1h`` / ``30m`` / ``5400s``; plan a run to end within one."""

from __future__ import annotations

import math
import re
from typing import Optional, Union

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([hms])")


def parse_duration(text: Union[str, float, int]) -> float:
    r"""Seconds in a duration such as ``"1h"``, ``"30m"``, ``"5400s"``, ``"1h30m"``.

    A bare number is seconds. Raises :class:`ValueError` on anything else or on a
    duration that is not positive.

    Example:
        >>> parse_duration("1h"), parse_duration("1h30m"), parse_duration("90")
        (3600.0, 5400.0, 90.0)
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = text.strip().lower().replace(" ", "")
        try:
            seconds = float(s)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(s):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(s) or not s:
                raise ValueError(
                    f"cannot read the duration {text!r}: use e.g. 1h, 30m, 5400s or "
                    "1h30m"
                ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a time budget must be positive, got {text!r}")
    return seconds


def budget_reserve(budget: float) -> float:
    r"""Seconds of :obj:`budget` kept free for timing noise: 3% plus one second."""
    return 0.03 * budget + 1.0


def plan_total_steps(
    remaining: float,
    steps_done: int,
    steps_per_epoch: int,
    step_time: float,
    epoch_overhead: float,
    final_time: float = 0.0,
    max_steps: Optional[int] = None,
) -> int:
    r"""The largest total step count whose remaining work fits in :obj:`remaining`.

    From :obj:`steps_done` on, a total of :math:`T` steps costs
    :math:`(T - s)\,t_{step}` plus, for each of the
    :math:`e = \lceil T / S \rceil - \lfloor s / S \rfloor` epoch ends it
    reaches (the current epoch's included; the last epoch may be partial),
    :math:`t_{epoch}` for evaluation and checkpoints, plus :obj:`final_time` once
    at the end (final evaluation):

    .. math::
        (T - s)\,t_{step} + e\,t_{epoch} + t_{final} \le R

    Args:
        remaining (float): Seconds left :math:`R`.
        steps_done (int): Optimiser steps already taken :math:`s` (mid-epoch
            too).
        steps_per_epoch (int): :math:`S`.
        step_time (float): Seconds per training step :math:`t_{step}`.
        epoch_overhead (float): Seconds per epoch end :math:`t_{epoch}`.
        final_time (float, optional): Seconds of the final evaluation.
            (default: :obj:`0.0`)
        max_steps (int, optional): Upper bound on the total. (default: :obj:`None`)

    Returns:
        int: The planned total, :math:`\ge` :obj:`steps_done`; equal to it when not
        even one step fits.

    Example:
        >>> plan_total_steps(100.0, 0, steps_per_epoch=10, step_time=1.0,
        ...                  epoch_overhead=5.0)
        65
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    step_time = max(float(step_time), 1e-9)
    avail = float(remaining) - float(final_time)
    epochs_done = steps_done // steps_per_epoch
    best = steps_done
    ends = 1  # epoch ends the remaining steps reach (a started epoch's included)
    while True:
        for_steps = avail - ends * float(epoch_overhead)
        if for_steps <= 0:
            break
        total = steps_done + math.floor(for_steps / step_time)
        if total <= max(steps_done, (epochs_done + ends - 1) * steps_per_epoch):
            break
        best = min(total, (epochs_done + ends) * steps_per_epoch)
        if max_steps is not None and best >= max_steps:
            return max(steps_done, int(max_steps))
        if total < (epochs_done + ends) * steps_per_epoch:
            break
        ends += 1
    return best


__all__ = ["parse_duration", "plan_total_steps", "budget_reserve"]
