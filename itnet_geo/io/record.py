"""The arrays one file holds, as returned by :func:`itnet_geo.io.read`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True, eq=False)
class Record:
    r"""The geometry read from one file, as plain numpy arrays.

    Args:
        pos (np.ndarray): Point or vertex coordinates, cast to ``float32``.
        face (np.ndarray, optional): Triangles as 0-based vertex indices, cast to
            ``int64``; polygons are fan-triangulated by the readers.
            (default: :obj:`None`)
        normal (np.ndarray, optional): Per-point normals, ``float32``, same shape as
            :obj:`pos`. (default: :obj:`None`)
        label (np.ndarray, optional): One class label per shape, ``int64``; only
            batch files (``ply_hdf5_2048``) carry labels. (default: :obj:`None`)

    Shapes:
        - **pos:** :math:`(N, 3)`, or :math:`(S, N, 3)` for a batch of :math:`S`
          shapes (``.h5``)
        - **face:** :math:`(F, 3)` or :obj:`None`
        - **normal:** same as **pos**, or :obj:`None`
        - **label:** :math:`(S,)` or :obj:`None`

    Example:
        >>> import numpy as np
        >>> rec = Record(pos=np.zeros((4, 3)), face=np.array([[0, 1, 2], [0, 2, 3]]))
        >>> rec.pos.dtype, rec.face.dtype, rec.normal
        (dtype('float32'), dtype('int64'), None)
    """

    pos: np.ndarray
    face: Optional[np.ndarray] = None
    normal: Optional[np.ndarray] = None
    label: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        pos = np.ascontiguousarray(self.pos, dtype=np.float32)
        if pos.ndim not in (2, 3) or pos.shape[-1] != 3:
            raise ValueError(
                f"pos must have shape (N, 3) or (S, N, 3), got {pos.shape}"
            )
        object.__setattr__(self, "pos", pos)
        if self.face is not None:
            face = np.ascontiguousarray(self.face, dtype=np.int64)
            if face.ndim != 2 or face.shape[1] != 3:
                raise ValueError(f"face must have shape (F, 3), got {face.shape}")
            object.__setattr__(self, "face", face)
        if self.normal is not None:
            normal = np.ascontiguousarray(self.normal, dtype=np.float32)
            if normal.shape != pos.shape:
                raise ValueError(
                    f"normal must have the shape of pos {pos.shape}, got {normal.shape}"
                )
            object.__setattr__(self, "normal", normal)
        if self.label is not None:
            label = np.ascontiguousarray(self.label, dtype=np.int64)
            if label.ndim != 1:
                raise ValueError(f"label must have shape (S,), got {label.shape}")
            object.__setattr__(self, "label", label)

    def __repr__(self) -> str:
        parts = [f"pos={list(self.pos.shape)}"]
        for name in ("face", "normal", "label"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={list(value.shape)}")
        return f"Record({', '.join(parts)})"
