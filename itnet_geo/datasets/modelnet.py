"""ModelNet10 / ModelNet40 in any of the four layouts it is distributed in."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch_geometric.data import Data

from itnet_geo._surface import sample_surface
from itnet_geo.datasets._base import (
    ShapeDataset,
    ShapeSource,
    scan_class_folders,
    shape_dataset_options,
    shape_generator,
    split_dirs,
)
from itnet_geo.io import read

#: The ten ModelNet10 classes (a subset of ModelNet40's forty).
MODELNET10_CLASSES = (
    "bathtub",
    "bed",
    "chair",
    "desk",
    "dresser",
    "monitor",
    "night_stand",
    "sofa",
    "table",
    "toilet",
)
#: Shapes per class in the official test splits (ModelNet40: 2,468 shapes,
#: ModelNet10: 908), keyed by ``"40"`` / ``"10"``: the weights of
#: ``itnet-geo eval --class-weights modelnet40-test``, which re-weighs per-class
#: accuracies measured on a validation split carved from train (whose classes
#: are in their train proportions) as the test split would.
TEST_COUNTS: dict[str, dict[str, int]] = {
    "40": {
        **dict.fromkeys(
            "airplane bed bookshelf bottle car chair glass_box guitar mantel monitor "
            "piano plant range_hood sofa table toilet tv_stand vase".split(),
            100,
        ),
        **dict.fromkeys(("desk", "dresser", "night_stand"), 86),
        "bathtub": 50,
        **dict.fromkeys(
            "bench bowl cone cup curtain door flower_pot keyboard lamp laptop "
            "person radio sink stairs stool tent wardrobe xbox".split(),
            20,
        ),
    },
    "10": {
        **dict.fromkeys(
            ("bed", "chair", "monitor", "sofa", "table", "toilet"),
            100,
        ),
        **dict.fromkeys(("desk", "dresser", "night_stand"), 86),
        "bathtub": 50,
    },
}
LAYOUTS = ("off", "normal_resampled", "ply_hdf5_2048", "points")
MESH_EXTENSIONS = (".off",)
POINT_EXTENSIONS = (".npy", ".ply", ".pcd", ".txt")
_H5 = re.compile(r"^ply_data_(train|test)(\d*)\.(h5|hdf5)$")


def detect_layout(root: str | os.PathLike) -> str:
    r"""Which ModelNet layout :obj:`root` holds.

    In this order: ``ply_data_*.h5`` files → ``"ply_hdf5_2048"``;
    ``modelnet*_shape_names.txt`` → ``"normal_resampled"``; class folders with
    ``.off`` files → ``"off"``; class folders with ``.npy`` / ``.ply`` / ``.pcd`` /
    ``.txt`` files → ``"points"``.

    Raises:
        FileNotFoundError: None of them, with what was looked for.
    """
    root = Path(root)
    names = os.listdir(root)
    if any(_H5.match(name) for name in names):
        return "ply_hdf5_2048"
    if any(re.fullmatch(r"modelnet\d+_shape_names\.txt", n) for n in names):
        return "normal_resampled"
    extensions: set[str] = set()
    for split, classes in split_dirs(root).items():
        for name in classes:
            with os.scandir(root / name / split) as entries:
                extensions.update(os.path.splitext(e.name)[1].lower() for e in entries)
    if extensions & set(MESH_EXTENSIONS):
        return "off"
    if extensions & set(POINT_EXTENSIONS):
        return "points"
    raise FileNotFoundError(
        f"cannot tell the ModelNet layout of {root}: looked for ply_data_*.h5 "
        "(ply_hdf5_2048), modelnet40_shape_names.txt / modelnet10_shape_names.txt "
        "(normal_resampled), <class>/{train,test}/*.off (off) and "
        "<class>/{train,test}/*.{npy,ply,pcd,txt} (points)"
    )


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"missing list file {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class ModelNet(ShapeDataset):
    r"""The ModelNet10 / ModelNet40 shape classification benchmark.

    A PyG :class:`~torch_geometric.data.InMemoryDataset` of
    ``Data(pos, y[, normal])``, one shape per item, ``y`` of shape ``(1,)``.
    :obj:`root` is the folder holding the class folders or the layout's own
    files; it is only read. The layout is detected (:func:`detect_layout`) or
    given:

    - ``"off"``: the official meshes ``<class>/{train,test}/<class>_NNNN.off``,
      surface-sampled with area weighting (:func:`~itnet_geo.transforms.
      sample_surface`) to :obj:`num_points` points with face normals;
    - ``"normal_resampled"``: ``modelnet40_normal_resampled`` —
      ``<class>/<id>.txt`` rows ``x,y,z,nx,ny,nz`` listed by
      ``modelnet{40,10}_{train,test}.txt``, classes in
      ``modelnet{40,10}_shape_names.txt``;
    - ``"ply_hdf5_2048"``: ``ply_data_{train,test}<i>.h5`` batches with labels
      indexing ``shape_names.txt``;
    - ``"points"``: one point file per shape,
      ``<class>/{train,test}/*.{npy,ply,pcd,txt}``.

    Labels index :attr:`classes`, the *sorted* class names, in every layout (h5
    and ``normal_resampled`` labels are remapped), so a model trained on one
    layout reads the others. ``name="10"`` selects the ModelNet10 list files of
    ``normal_resampled`` and otherwise restricts a root with more classes to the
    ten ModelNet10 ones; a root holding other classes uses what it holds.

    Clouds with more than :obj:`num_points` points are subsampled without
    replacement, smaller ones kept whole; meshes are sampled. Both use a
    generator seeded by :obj:`seed` and the file's relative path, so results do
    not depend on processing order. Coordinates are kept as stored (ModelNet's
    raw meshes reach :math:`10^5`): pass
    ``pre_transform=NormalizeUnitSphere()`` to normalise them once, before
    caching. Processing is cached outside :obj:`root` (see
    :class:`~itnet_geo.datasets.ShapeDataset` for the cache, ``on_error`` and
    :attr:`skipped`).

    Args:
        root (str or os.PathLike): Data folder.
        name (str, optional): ``"40"`` or ``"10"``. (default: ``"40"``)
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        layout (str, optional): ``"auto"`` or one of :data:`LAYOUTS`.
            (default: ``"auto"``)
        num_points (int, optional): Points per shape; :obj:`None` keeps clouds
            whole (meshes need a number). (default: :obj:`1024`)
        include_normals (bool, optional): Keep normals where the layout has them
            (meshes, ``normal_resampled``, h5 with ``normal``).
            (default: :obj:`True`)
        seed (int, optional): Sampling seed. (default: :obj:`0`)
        transform (callable, optional): Applied on access. (default: :obj:`None`)
        pre_transform (callable, optional): Applied before caching.
            (default: :obj:`None`)
        pre_filter (callable, optional): Shapes to keep, before caching.
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
        - **pos:** :math:`(\text{num\_points}, 3)`
        - **normal:** :math:`(\text{num\_points}, 3)` where available
        - **y:** :math:`(1,)`

    Example:
        >>> import tempfile
        >>> from itnet_geo.datasets import SyntheticShapes
        >>> tmp = tempfile.mkdtemp()
        >>> _ = SyntheticShapes(tmp, num_per_class=2, num_classes=10, cache_dir=tmp)
        >>> ds = ModelNet(tmp, layout="auto", num_points=256, cache_dir=tmp)
        >>> len(ds), ds.num_classes, ds[0].pos.shape, ds[0].normal.shape
        (20, 10, torch.Size([256, 3]), torch.Size([256, 3]))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        name: str = "40",
        split: str = "train",
        layout: str = "auto",
        num_points: Optional[int] = 1024,
        include_normals: bool = True,
        seed: int = 0,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        on_error: str = "raise",
        cache_dir: Optional[str | os.PathLike] = None,
        force_reload: bool = False,
        log: bool = True,
    ):
        name = str(name)
        if name not in ("10", "40"):
            raise ValueError(f"name must be '10' or '40', got {name!r}")
        if layout != "auto" and layout not in LAYOUTS:
            raise ValueError(
                f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}"
            )
        if num_points is not None and num_points < 1:
            raise ValueError(f"num_points must be positive or None, got {num_points}")
        if not Path(root).expanduser().is_dir():
            raise FileNotFoundError(f"dataset root {root} is not a folder")
        self.name = name
        self.layout = (
            detect_layout(Path(root).expanduser()) if layout == "auto" else layout
        )
        if self.layout == "off" and num_points is None:
            raise ValueError("the 'off' layout samples meshes: num_points is required")
        self.num_points = num_points
        self.include_normals = include_normals
        self.seed = seed
        super().__init__(root, split, **shape_dataset_options(locals()))

    def _options(self) -> dict[str, Any]:
        return dict(
            super()._options(),
            layout=self.layout,
            name=self.name,
            num_points=self.num_points,
            include_normals=self.include_normals,
            seed=self.seed,
        )

    # -- discovery ----------------------------------------------------------------

    def _discover(self) -> tuple[list[ShapeSource], list[Path]]:
        root = Path(self.root)
        if self.layout == "ply_hdf5_2048":
            return self._discover_h5(root)
        if self.layout == "normal_resampled":
            return self._discover_normal_resampled(root)
        extensions = MESH_EXTENSIONS if self.layout == "off" else POINT_EXTENSIONS
        classes, sources = scan_class_folders(root, self.split, extensions)
        keep = self._restrict(classes)
        if len(keep) < len(classes):
            index = {c: i for i, c in enumerate(keep)}
            sources = [
                ShapeSource(s.path, index[classes[s.label]])
                for s in sources
                if classes[s.label] in index
            ]
        self.classes = keep
        return sources, []

    def _restrict(self, classes: list[str]) -> list[str]:
        """ModelNet10's classes when ``name="10"`` and the root holds more."""
        if self.name == "10" and set(MODELNET10_CLASSES) < set(classes):
            return sorted(MODELNET10_CLASSES)
        return sorted(classes)

    def _discover_normal_resampled(
        self, root: Path
    ) -> tuple[list[ShapeSource], list[Path]]:
        names_file = root / f"modelnet{self.name}_shape_names.txt"
        split_file = root / f"modelnet{self.name}_{self.split}.txt"
        for path in (names_file, split_file):
            if not path.is_file():
                present = sorted(p.name for p in root.glob("modelnet*_*.txt"))
                raise FileNotFoundError(
                    f"normal_resampled layout: missing {path} (ModelNet{self.name}, "
                    f"'{self.split}' split); list files present: {present or 'none'}"
                )
        self.classes = sorted(set(_read_list(names_file)))
        index = {c: i for i, c in enumerate(self.classes)}
        sources = []
        for number, shape_id in enumerate(_read_list(split_file), start=1):
            cls = shape_id.rsplit("_", 1)[0]
            if cls not in index:
                raise ValueError(
                    f"{split_file}: line {number}: shape {shape_id!r} is of class "
                    f"{cls!r}, which {names_file.name} does not list"
                )
            sources.append(ShapeSource(root / cls / f"{shape_id}.txt", index[cls]))
        return sources, [names_file, split_file]

    def _discover_h5(self, root: Path) -> tuple[list[ShapeSource], list[Path]]:
        names_file = root / "shape_names.txt"
        files = []
        for name in os.listdir(root):
            match = _H5.match(name)
            if match and match.group(1) == self.split:
                files.append((int(match.group(2) or 0), name))
        if not files:
            present = sorted(n for n in os.listdir(root) if _H5.match(n))
            raise FileNotFoundError(
                f"ply_hdf5_2048 layout: no '{self.split}' split in {root}: looked for "
                f"ply_data_{self.split}*.h5; found {present}"
            )
        if not names_file.is_file():
            raise FileNotFoundError(
                f"ply_hdf5_2048 layout: missing {names_file} (the class names the "
                "h5 labels index)"
            )
        self._h5_names = _read_list(names_file)
        self.classes = self._restrict(self._h5_names)
        sources = [ShapeSource(root / name, -1) for _, name in sorted(files)]
        return sources, [names_file]

    # -- processing ---------------------------------------------------------------

    def _process_source(self, source: ShapeSource) -> list[Data]:
        rec = read(source.path)
        key = str(source.path)[len(self.root) + 1 :]
        if rec.pos.ndim == 3:
            return self._process_batch(rec, key)
        pos, normal = self._points(rec.pos, rec.face, rec.normal, key)
        return [self._shape(pos, normal, source.label)]

    def _process_batch(self, rec: Any, key: str) -> list[Data]:
        if rec.label is None:
            raise ValueError("h5 file without a 'label' dataset")
        names = self._h5_names
        bad = (rec.label < 0) | (rec.label >= len(names))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"shape {first}: label {int(rec.label[first])} outside the "
                f"{len(names)} classes of shape_names.txt"
            )
        index = {c: i for i, c in enumerate(self.classes)}
        out = []
        for i, label in enumerate(rec.label.tolist()):
            cls = names[label]
            if cls not in index:
                continue
            normal = None if rec.normal is None else rec.normal[i]
            pos, normal = self._points(rec.pos[i], None, normal, f"{key}#{i}")
            shape = self._shape(pos, normal, index[cls])
            shape.source_index = i
            out.append(shape)
        return out

    def _points(
        self,
        pos: np.ndarray,
        face: Optional[np.ndarray],
        normal: Optional[np.ndarray],
        key: str,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if face is not None and len(face) > 0:
            if self.num_points is None:
                raise ValueError("a mesh needs num_points to be sampled")
            p, n = sample_surface(
                torch.from_numpy(pos),
                torch.from_numpy(face).t(),
                self.num_points,
                shape_generator(self.seed, key),
            )
        else:
            # io.read guarantees finite values; only the size is checked here.
            p = torch.from_numpy(np.ascontiguousarray(pos))
            n = (
                None
                if normal is None
                else torch.from_numpy(np.ascontiguousarray(normal))
            )
            if p.size(0) == 0:
                raise ValueError("no points")
            if self.num_points is not None and p.size(0) > self.num_points:
                generator = shape_generator(self.seed, key)
                idx = torch.randperm(p.size(0), generator=generator)[: self.num_points]
                idx = idx.sort().values
                p = p[idx]
                n = None if n is None else n[idx]
        return p, (n if self.include_normals else None)

    @staticmethod
    def _shape(pos: torch.Tensor, normal: Optional[torch.Tensor], label: int) -> Data:
        data = Data(pos=pos, y=torch.tensor([label], dtype=torch.long))
        if normal is not None:
            data.normal = normal
        return data

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)}, name={self.name}, "
            f"split={self.split}, layout={self.layout})"
        )
