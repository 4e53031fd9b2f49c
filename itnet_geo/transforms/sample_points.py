"""Area-weighted surface sampling of triangle meshes, with face normals."""

from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo._surface import sample_surface
from itnet_geo.transforms._batch import graph_index, set_ptr

__all__ = ["SamplePoints", "sample_surface"]


class SamplePoints(BaseTransform):
    r"""Sample :obj:`num` points on a mesh surface, weighted by face area.

    Replaces ``pos`` by the sampled points and (optionally) sets ``normal`` to the
    unit normal of the face each point lies on; ``face`` is removed. With a fixed
    :obj:`seed` every call draws the same points for the same mesh (what a
    ``pre_transform`` wants); without it the global torch generator is used.
    On a batch each graph gets :obj:`num` points and ``batch`` is rebuilt.
    Per-vertex attributes other than ``pos`` and ``normal`` are left untouched.

    Args:
        num (int): Points per mesh.
        include_normals (bool, optional): Store face normals in ``normal``.
            (default: :obj:`True`)
        seed (int, optional): Seed of a private generator created per call.
            (default: :obj:`None`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, ``face`` :math:`(3, F)`
        - **output:** ``pos`` and ``normal`` :math:`(B \cdot num, 3)`

    Example:
        >>> from torch_geometric.data import Data
        >>> pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
        >>> mesh = Data(pos=pos, face=torch.tensor([[0], [1], [2]]))
        >>> data = SamplePoints(16, seed=0)(mesh)
        >>> data.pos.shape, data.normal.shape, "face" in data
        (torch.Size([16, 3]), torch.Size([16, 3]), False)
    """

    def __init__(
        self, num: int, include_normals: bool = True, seed: Optional[int] = None
    ):
        if num < 1:
            raise ValueError(f"num must be positive, got {num}")
        self.num = num
        self.include_normals = include_normals
        self.seed = seed

    def forward(self, data: Data) -> Data:
        if data.pos is None or data.face is None:
            raise ValueError("SamplePoints needs 'pos' and 'face'")
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        pos, face = data.pos, data.face
        batch, num_graphs = graph_index(data)
        if batch is None:
            points, normals = sample_surface(pos, face, self.num, generator)
        else:
            face_graph = batch[face[0]]
            parts = [
                sample_surface(pos, face[:, face_graph == g], self.num, generator)
                for g in range(num_graphs)
            ]
            points = torch.cat([p for p, _ in parts])
            normals = torch.cat([n for _, n in parts])
            counts = torch.full(
                (num_graphs,), self.num, dtype=torch.long, device=pos.device
            )
            data.batch = torch.arange(num_graphs, device=pos.device).repeat_interleave(
                self.num
            )
            set_ptr(data, counts)
        data.pos = points
        if self.include_normals:
            data.normal = normals
        elif "normal" in data:
            del data.normal
        del data.face
        return data

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num}, "
            f"include_normals={self.include_normals}, seed={self.seed})"
        )
