"""Random rotation of positions and normals about one axis or over SO(3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, per_node

_AXES = {"x": 0, "y": 1, "z": 2}


def _axis_rotations(angle: Tensor, axis: int) -> Tensor:
    """Rotation matrices ``(B, 3, 3)`` by ``angle`` (radians) about one axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    rot = torch.zeros(angle.numel(), 3, 3, dtype=angle.dtype)
    rot[:, axis, axis] = 1.0
    rot[:, i, i], rot[:, i, j] = c, -s
    rot[:, j, i], rot[:, j, j] = s, c
    return rot


def _uniform_rotations(num: int) -> Tensor:
    """Rotation matrices ``(num, 3, 3)`` drawn uniformly (Haar) from SO(3)."""
    q = torch.randn(num, 4, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(row, dim=1) for row in rows], dim=1)


class RandomRotate(BaseTransform):
    r"""Rotate each shape by a random rotation (positions and normals).

    .. math::
        p_i \leftarrow R\,p_i, \qquad n_i \leftarrow R\,n_i

    With ``axis="x" | "y" | "z"`` the angle is uniform in
    :math:`[-\text{max\_degrees}, \text{max\_degrees}]` about that axis (ModelNet's
    up axis is ``z``); with ``axis="so3"`` :math:`R` is uniform (Haar) over all
    rotations. Norms, distances and the origin are preserved. On a batch every
    graph gets its own rotation. Uses the global torch generator.

    Args:
        axis (str, optional): ``"x"``, ``"y"``, ``"z"`` or ``"so3"``.
            (default: ``"z"``)
        max_degrees (float, optional): Largest angle for a single-axis rotation.
            (default: :obj:`180.0`)

    Shapes:
        - **input / output:** ``pos`` and ``normal`` :math:`(N, 3)`

    Example:
        >>> from torch_geometric.data import Data
        >>> data = RandomRotate("so3")(Data(pos=torch.tensor([[3.0, 4.0, 0.0]])))
        >>> round(float(data.pos.norm()), 4)
        5.0
    """

    def __init__(self, axis: str = "z", max_degrees: float = 180.0):
        if axis not in (*_AXES, "so3"):
            raise ValueError(f"axis must be 'x', 'y', 'z' or 'so3', got {axis!r}")
        self.axis = axis
        self.max_degrees = float(max_degrees)

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("RandomRotate needs 'pos'")
        batch, num_graphs = graph_index(data)
        num_graphs = max(num_graphs, 1)
        if self.axis == "so3":
            rot = _uniform_rotations(num_graphs)
        else:
            limit = math.radians(self.max_degrees)
            angle = (torch.rand(num_graphs, dtype=torch.float64) * 2 - 1) * limit
            rot = _axis_rotations(angle, _AXES[self.axis])
        for key in ("pos", "normal"):
            value = data[key] if key in data else None
            if value is None:
                continue
            if value.size(-1) != 3:
                raise ValueError(f"RandomRotate needs 3D '{key}', got {value.shape}")
            node_rot = per_node(rot.to(value.device, value.dtype), batch, value.size(0))
            data[key] = torch.einsum("nij,nj->ni", node_rot, value)
        return data

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(axis={self.axis!r}, "
            f"max_degrees={self.max_degrees})"
        )
