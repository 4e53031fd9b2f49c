"""Tensor aliases and flags for the optional compiled accelerators."""

from __future__ import annotations

import importlib.util
from typing import Optional, Union

from torch import Tensor

#: ``True`` when the compiled ``torch_cluster`` package is importable.
WITH_TORCH_CLUSTER: bool = importlib.util.find_spec("torch_cluster") is not None
#: ``True`` when the compiled ``torch_scatter`` package is importable.
WITH_TORCH_SCATTER: bool = importlib.util.find_spec("torch_scatter") is not None

OptTensor = Optional[Tensor]
PairTensor = tuple[Tensor, Tensor]
OptPairTensor = tuple[Tensor, Optional[Tensor]]
TensorOrPair = Union[Tensor, PairTensor]

__all__ = [
    "WITH_TORCH_CLUSTER",
    "WITH_TORCH_SCATTER",
    "OptTensor",
    "PairTensor",
    "OptPairTensor",
    "TensorOrPair",
]
