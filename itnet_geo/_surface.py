"""Area-weighted surface sampling of a triangle mesh.

Shared by the datasets, which sample meshes when they are processed, and by
:class:`~itnet_geo.transforms.SamplePoints`, without the datasets importing the
transforms that come after them in the data path; public as
:func:`itnet_geo.transforms.sample_surface`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def sample_surface(
    pos: Tensor,
    face: Tensor,
    num: int,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    r"""Sample points uniformly on the surface of a triangle mesh.

    A face is drawn with probability proportional to its area, then a point
    uniformly inside it (reflected barycentric coordinates), so the points are
    i.i.d. uniform with respect to surface area. Each point gets the unit normal of
    its face. Areas are computed in ``float64``, so raw coordinates of any scale
    (ModelNet's reach :math:`10^5`) are safe.

    Args:
        pos (torch.Tensor): Vertex coordinates.
        face (torch.Tensor): Triangles as vertex indices (PyG convention).
        num (int): Number of points.
        generator (torch.Generator, optional): A CPU random source (sampling runs
            on the CPU); the global one when :obj:`None`. (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): Points and unit normals, in the dtype of
        :obj:`pos`.

    Shapes:
        - **pos:** :math:`(N, 3)`, **face:** :math:`(3, F)`
        - **output:** :math:`(num, 3)`, :math:`(num, 3)`

    Raises:
        ValueError: If the mesh has no face of positive, finite area.

    Example:
        >>> from itnet_geo.transforms import sample_surface
        >>> pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
        >>> points, normals = sample_surface(pos, torch.tensor([[0], [1], [2]]), 5)
        >>> points.shape, normals[0].tolist()
        (torch.Size([5, 3]), [0.0, 0.0, 1.0])
    """
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
    if face.dim() != 2 or face.size(0) != 3:
        raise ValueError(f"face must have shape (3, F), got {tuple(face.shape)}")
    if num < 0:
        raise ValueError(f"num must be non-negative, got {num}")
    p = pos.detach().to(device="cpu", dtype=torch.float64)
    face = face.cpu()
    v0, v1, v2 = p[face[0]], p[face[1]], p[face[2]]
    cross = torch.linalg.cross(v1 - v0, v2 - v0, dim=1)
    area2 = cross.norm(dim=1)
    area2 = torch.where(torch.isfinite(area2), area2, torch.zeros_like(area2))
    if face.size(1) == 0 or not bool((area2 > 0).any()):
        raise ValueError("mesh has no face with positive area to sample from")
    idx = torch.multinomial(area2, num, replacement=True, generator=generator)
    uv = torch.rand(num, 2, dtype=torch.float64, generator=generator)
    flip = uv.sum(dim=1) > 1
    uv[flip] = 1 - uv[flip]
    a, b, c = v0[idx], v1[idx], v2[idx]
    points = a + uv[:, :1] * (b - a) + uv[:, 1:] * (c - a)
    normals = cross[idx] / area2[idx].unsqueeze(1)
    return points.to(pos.device, pos.dtype), normals.to(pos.device, pos.dtype)
