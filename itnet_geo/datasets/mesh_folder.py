"""Meshes in class folders (SHREC style): ``<class>/{train,test}/*.obj|off|ply``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from torch_geometric.data import Data

from itnet_geo.datasets._base import (
    ShapeDataset,
    ShapeSource,
    scan_class_folders,
    shape_dataset_options,
)
from itnet_geo.io import read

MESH_EXTENSIONS = (".obj", ".off", ".ply")


class MeshFolder(ShapeDataset):
    r"""Triangle meshes sorted into class folders, e.g. SHREC'11 split 16.

    Reads ``<root>/<class>/<split>/*.{obj,off,ply}`` into
    ``Data(pos, face, y)``: vertices as stored, triangles as a ``[3, F]`` long
    tensor (PyG's convention; polygons are fan-triangulated by
    :func:`itnet_geo.io.read`), ``y`` of shape ``(1,)`` indexing :attr:`classes`
    (the sorted class folder names). A file without faces is an error (skipped
    under ``on_error="skip"``). Pair with
    :class:`~itnet_geo.transforms.MeshToGraph` (edges, quadrature weights, HKS)
    as ``pre_transform``, or :class:`~itnet_geo.transforms.SamplePoints` for a
    point-cloud view. Caching, ``on_error`` and :attr:`skipped` are those of
    :class:`~itnet_geo.datasets.ShapeDataset`.

    Args:
        root (str or os.PathLike): Folder holding the class folders.
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        extensions (tuple[str], optional): File types to read.
            (default: ``(".obj", ".off", ".ply")``)
        transform (callable, optional): Applied on access. (default: :obj:`None`)
        pre_transform (callable, optional): Applied before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): Meshes to keep, before caching.
            (default: :obj:`None`)
        on_error (str, optional): ``"raise"`` or ``"skip"``.
            (default: ``"raise"``)
        cache_dir (str or os.PathLike, optional): Cache root.
            (default: ``$ITNET_GEO_CACHE`` or ``~/.cache/itnet_geo``)
        force_reload (bool, optional): Ignore a valid cache entry.
            (default: :obj:`False`)
        log (bool, optional): Progress bar while processing.
            (default: :obj:`True`)

    Shapes:
        - **pos:** :math:`(N, 3)`
        - **face:** :math:`(3, F)`
        - **y:** :math:`(1,)`

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "tri" / "train").mkdir(parents=True)
        >>> off = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
        >>> _ = (root / "tri" / "train" / "a.off").write_text(off)
        >>> ds = MeshFolder(root, cache_dir=root / "cache")
        >>> ds[0].face.tolist(), ds.classes
        ([[0], [1], [2]], ['tri'])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        extensions: tuple[str, ...] = MESH_EXTENSIONS,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        on_error: str = "raise",
        cache_dir: Optional[str | os.PathLike] = None,
        force_reload: bool = False,
        log: bool = True,
    ):
        self.extensions = tuple(sorted(ext.lower() for ext in extensions))
        super().__init__(root, split, **shape_dataset_options(locals()))

    def _options(self) -> dict[str, Any]:
        return dict(super()._options(), extensions=list(self.extensions))

    def _discover(self) -> tuple[list[ShapeSource], list[Path]]:
        self.classes, sources = scan_class_folders(
            Path(self.root), self.split, self.extensions
        )
        return sources, []

    def _process_source(self, source: ShapeSource) -> list[Data]:
        rec = read(source.path)
        if rec.face is None or len(rec.face) == 0:
            raise ValueError("no faces: not a triangle mesh")
        pos = torch.from_numpy(rec.pos)
        if not bool(torch.isfinite(pos).all()):
            raise ValueError("non-finite coordinates")
        face = torch.from_numpy(rec.face).t().contiguous()
        y = torch.tensor([source.label], dtype=torch.long)
        return [Data(pos=pos, face=face, y=y)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)}, split={self.split})"
