r"""Datasets for training runs: kinds, options, validation carving, augmentation.

A :class:`DataSpec` says which dataset a run uses and how it is read; it is
stored in every checkpoint so ``itnet-geo eval`` can read another root (say, the
test split the run never saw) the same way, with no other flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch_geometric.data import Dataset
from torch_geometric.transforms import Compose

from itnet_geo.datasets import MeshFolder, ModelNet, SyntheticShapes, detect_layout
from itnet_geo.transforms import (
    MeshToGraph,
    NormalizeUnitSphere,
    PointCutMix,
    RandomAnisotropicScale,
    RandomJitter,
    RandomPointDropout,
    RandomRotate,
    RandomShift,
    SamplePoints,
    SubsamplePoints,
)

#: The dataset kinds ``itnet-geo train --dataset`` accepts.
DATASET_KINDS = ("synthetic", "modelnet40", "modelnet10", "shrec16", "folder")
#: How shapes reach the model: point clouds, or mesh graphs (:class:`MeshToGraph`).
INPUTS = ("points", "mesh")

#: Training augmentation per dataset kind (see :func:`build_augment`).
DEFAULT_AUGMENT: dict[str, tuple[str, ...]] = {
    "synthetic": ("rotate-z", "scale:0.8:1.25", "jitter"),
    "modelnet40": ("scale",),
    "modelnet10": ("scale",),
    "shrec16": (),
    "folder": ("scale",),
}


@dataclass
class DataSpec:
    r"""Which dataset a run reads and how.

    Args:
        kind (str): One of :data:`DATASET_KINDS`.
        root (str): Data folder (for ``synthetic``: where shapes are generated).
        num_points (int, optional): Points per shape. (default: :obj:`1024`)
        train_points (int, optional): Point resampling: training shapes are
            sampled with this many points (more than :obj:`num_points`) and
            each time a shape is read :obj:`num_points` of them are drawn at
            random (:class:`~itnet_geo.transforms.SubsamplePoints`), so every
            epoch sees other points of the same surfaces; the validation shapes
            carved from train get one fixed draw, test shapes are sampled with
            :obj:`num_points` as before. Point inputs only. (default:
            :obj:`None`)
        input (str, optional): ``"points"`` or ``"mesh"`` (mesh graphs with
            quadrature weights; mesh datasets only). (default: ``"points"``)
        normals (bool, optional): Feed point normals to the model as ``x``
            (:meth:`prepare`). (default: :obj:`False`)
        hks (int, optional): Heat-kernel-signature features of mesh inputs.
            (default: :obj:`16`)
        hks_eigs (int, optional): Laplacian eigenpairs those signatures are
            summed over (at most the vertex count; more reach smaller, more
            local time scales). (default: :obj:`64`)
        layout (str, optional): ModelNet layout, ``"auto"`` to detect.
            (default: ``"auto"``)
        seed (int, optional): Sampling / generation seed. (default: :obj:`0`)
        val_fraction (float, optional): Share of each class of train carved out
            for validation. (default: :obj:`0.1`)
        val_seed (int, optional): Seed of that carving. (default: :obj:`0`)
        synthetic_classes (int, optional): ``synthetic``: number of classes.
            (default: :obj:`10`)
        synthetic_train (int, optional): ``synthetic``: shapes per class in train;
            :obj:`None` for the dataset default. (default: :obj:`None`)
        synthetic_test (int, optional): ``synthetic``: shapes per class in test.
            (default: :obj:`None`)
        cache_dir (str, optional): Processed-data cache (not stored in
            checkpoints). (default: :obj:`None`)

    Example:
        >>> spec = DataSpec(kind="modelnet40", root="data/ModelNet40", normals=True)
        >>> spec.in_channels, DataSpec.from_dict(spec.to_dict(), root="other").root
        (3, 'other')
    """

    kind: str
    root: str
    num_points: int = 1024
    train_points: Optional[int] = None
    input: str = "points"
    normals: bool = False
    hks: int = 16
    hks_eigs: int = 64
    layout: str = "auto"
    seed: int = 0
    val_fraction: float = 0.1
    val_seed: int = 0
    synthetic_classes: int = 10
    synthetic_train: Optional[int] = None
    synthetic_test: Optional[int] = None
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(
                f"unknown dataset {self.kind!r}; choose one of "
                f"{', '.join(DATASET_KINDS)}"
            )
        if self.input not in INPUTS:
            raise ValueError(f"input must be 'points' or 'mesh', got {self.input!r}")
        if self.input == "mesh" and self.kind not in ("shrec16", "folder"):
            raise ValueError(f"mesh input needs a mesh dataset, not {self.kind!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.hks_eigs < 1:
            raise ValueError(f"hks_eigs must be positive, got {self.hks_eigs}")
        if self.train_points is not None:
            if self.input != "points":
                raise ValueError("train_points resamples point clouds, not meshes")
            if self.train_points <= self.num_points:
                raise ValueError(
                    f"train_points ({self.train_points}) must exceed num_points "
                    f"({self.num_points})"
                )
        self.root = str(self.root)

    @property
    def in_channels(self) -> int:
        r"""Per-point input features the model gets in ``x``."""
        if self.input == "mesh":
            return self.hks
        return 3 if self.normals else 0

    def prepare(self, batch: Any) -> Any:
        r"""Last step before the model, after augmentation: normals into ``x``."""
        if self.input == "points" and self.normals:
            if getattr(batch, "normal", None) is None:
                raise ValueError(f"normals requested but the {self.kind} data has none")
            batch.x = batch.normal
        return batch

    def to_dict(self) -> dict[str, Any]:
        r"""Plain options for a checkpoint (without the machine-local cache dir)."""
        out = dataclasses.asdict(self)
        out.pop("cache_dir")
        return out

    @classmethod
    def from_dict(cls, options: dict[str, Any], **overrides: Any) -> DataSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in options.items() if k in known}
        values.update(overrides)
        return cls(**values)


def build_split(spec: DataSpec, split: str, progress: bool = True) -> Dataset:
    r"""The ``train`` or ``test`` split of :obj:`spec` as a dataset.

    Point inputs are normalised to the unit sphere once, before caching;
    meshes (``shrec16``, mesh ``folder``) are normalised and either surface-sampled
    to :attr:`DataSpec.num_points` points or turned into graphs by
    :class:`~itnet_geo.transforms.MeshToGraph`. :obj:`progress` shows a
    progress bar while files are processed (not when they come from the cache).

    Raises:
        FileNotFoundError: The root or the split is missing (the message says
            what was looked for).
    """
    root = Path(spec.root).expanduser()
    common: dict[str, Any] = {"cache_dir": spec.cache_dir, "log": progress}
    if spec.kind == "synthetic":
        per_class = spec.synthetic_train if split == "train" else spec.synthetic_test
        return SyntheticShapes(
            root,
            split=split,
            num_per_class=per_class,
            num_classes=spec.synthetic_classes,
            seed=spec.seed,
            num_points=spec.num_points,
            pre_transform=NormalizeUnitSphere(),
            **common,
        )
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    if spec.kind in ("modelnet40", "modelnet10"):
        return ModelNet(
            root,
            name=spec.kind[len("modelnet") :],
            split=split,
            layout=spec.layout,
            num_points=spec.num_points,
            seed=spec.seed,
            pre_transform=NormalizeUnitSphere(),
            **common,
        )
    if spec.kind == "folder" and spec.input == "points":
        try:
            detect_layout(root)
        except FileNotFoundError:
            pass  # e.g. OBJ meshes: read them as meshes below
        else:
            return ModelNet(
                root,
                split=split,
                layout=spec.layout,
                num_points=spec.num_points,
                seed=spec.seed,
                pre_transform=NormalizeUnitSphere(),
                **common,
            )
    if spec.input == "mesh":
        pre = Compose(
            [
                NormalizeUnitSphere(),
                MeshToGraph(hks=spec.hks, num_eigs=spec.hks_eigs, remove_faces=True),
            ]
        )
    else:
        pre = Compose(
            [NormalizeUnitSphere(), SamplePoints(spec.num_points, seed=spec.seed)]
        )
    return MeshFolder(root, split=split, pre_transform=pre, **common)


def build_train_val(
    spec: DataSpec, progress: bool = True
) -> tuple[Dataset, Optional[Dataset]]:
    r"""The training shapes of :obj:`spec` and the validation shapes carved from them.

    The ``train`` split (:func:`build_split`), less the validation part
    (:func:`carve_split` with :attr:`DataSpec.val_fraction` and
    :attr:`DataSpec.val_seed`; :obj:`None` for a fraction of 0). With
    :attr:`DataSpec.train_points` the split is sampled that densely and both
    parts read :attr:`DataSpec.num_points` of each shape's points through
    :class:`~itnet_geo.transforms.SubsamplePoints`: a new draw every time for
    training, one draw seeded by :attr:`DataSpec.seed` for validation.
    """
    dense = spec
    if spec.train_points is not None:
        dense = dataclasses.replace(
            spec, num_points=spec.train_points, train_points=None
        )
    full = build_split(dense, "train", progress)
    if spec.train_points is not None:
        _check_dense(full, spec)
    if spec.val_fraction > 0:
        train, val = carve_split(full, spec.val_fraction, spec.val_seed)
    else:
        train, val = full, None
    if spec.train_points is not None:
        train.transform = SubsamplePoints(spec.num_points)
        if val is not None:
            val.transform = SubsamplePoints(spec.num_points, seed=spec.seed)
    return train, val


def _point_counts(dataset: Dataset) -> torch.Tensor:
    r"""The number of points (``pos`` rows) of each shape of :obj:`dataset`."""
    data = getattr(dataset, "_data", None)
    slices = getattr(dataset, "slices", None) or {}
    if data is not None and "pos" in slices:
        index = torch.as_tensor(list(dataset.indices()), dtype=torch.long)
        return slices["pos"].diff()[index]
    counts = [dataset.get(int(i)).pos.size(0) for i in dataset.indices()]
    return torch.tensor(counts, dtype=torch.long)


def _check_dense(dataset: Dataset, spec: DataSpec) -> None:
    # Stored clouds are read with at most train_points points: where a source
    # holds fewer, resampling would silently draw (nearly) the same points.
    counts = _point_counts(dataset)
    short = torch.nonzero(counts < spec.train_points).view(-1)
    if short.numel() == 0:
        return
    first = int(short[0])
    name = shape_names(dataset)[first]
    raise ValueError(
        f"train_points={spec.train_points}: {short.numel()} of {len(counts)} "
        f"training shapes under {spec.root} have fewer points (the first, {name}, "
        f"has {int(counts[first])}; the densest has {int(counts.max())}), so there "
        f"is nothing to resample them from; point resampling needs meshes or "
        f"clouds of at least {spec.train_points} points"
    )


def labels_of(dataset: Dataset) -> torch.Tensor:
    r"""The graph labels of :obj:`dataset` (or of a subset of one), as a 1-D tensor."""
    data = getattr(dataset, "_data", None)
    y = getattr(data, "y", None) if data is not None else None
    slices = getattr(dataset, "slices", None) or {}
    if y is not None and "y" in slices and slices["y"].numel() - 1 == y.numel():
        index = torch.as_tensor(list(dataset.indices()), dtype=torch.long)
        return y.view(-1)[index]
    return torch.cat([dataset.get(int(i)).y.view(-1) for i in dataset.indices()])


def shape_names(dataset: Dataset) -> list[str]:
    r"""Per shape of :obj:`dataset` (or of a subset of one), in order, its name.

    The file it was read from (:attr:`ShapeDataset.names
    <itnet_geo.datasets.ShapeDataset>`), or its index in the full dataset for
    datasets that do not name their shapes.
    """
    names = getattr(dataset, "names", None) or None
    indices = list(dataset.indices())
    if names is None:
        return [str(i) for i in indices]
    return [names[i] for i in indices]


def carve_split(
    dataset: Dataset, fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset]:
    r"""Split :obj:`dataset` into (train, validation), :obj:`fraction` of each class.

    Per class, ``round(fraction * n)`` shapes (at least one when the class has two
    or more, never all of them) are drawn with a generator seeded by :obj:`seed`;
    the split depends only on the labels, the fraction and the seed.

    Returns:
        tuple: ``(train, validation)`` subsets (``index_select`` views).
    """
    y = labels_of(dataset)
    generator = torch.Generator().manual_seed(seed)
    val_index: list[int] = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).view(-1)
        n = members.numel()
        k = int(round(fraction * n))
        if fraction > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k = min(k, n - 1)
        if k <= 0:
            continue
        perm = torch.randperm(n, generator=generator)
        val_index.extend(members[perm[:k]].tolist())
    val_set = set(val_index)
    train_index = [i for i in range(len(dataset)) if i not in val_set]
    return dataset.index_select(train_index), dataset.index_select(sorted(val_index))


def _parse(item: str) -> tuple[str, list[float]]:
    name, *args = item.strip().split(":")
    try:
        return name, [float(a) for a in args]
    except ValueError:
        raise ValueError(
            f"bad augmentation {item!r}: arguments must be numbers"
        ) from None


def build_augment(names: Sequence[str]) -> Optional[Compose]:
    r"""A transform from augmentation names, applied to whole batches.

    ``rotate-x|y|z`` (random angle about that axis), ``rotate-so3`` (uniform
    rotation), ``scale[:lo:hi]`` (anisotropic, default ``2/3:3/2``),
    ``shift[:max]`` (per-shape translation, default ``0.2``),
    ``jitter[:sigma[:clip]]`` (default ``0.01:0.05``), ``dropout[:max_ratio]``
    (default ``0.875``), ``cutmix[:prob[:beta]]`` (:class:`PointCutMix`, default
    ``1:1``; put it before ``dropout``, it needs clouds of one size). An empty
    list gives :obj:`None`.
    """
    out = []
    for item in names:
        name, args = _parse(item)
        if name.startswith("rotate-"):
            axis = name[len("rotate-") :]
            out.append(RandomRotate(axis, *args[:1]))
        elif name == "scale":
            out.append(RandomAnisotropicScale(*args[:2]))
        elif name == "shift":
            out.append(RandomShift(*args[:1]))
        elif name == "jitter":
            out.append(RandomJitter(*args[:2]))
        elif name == "dropout":
            out.append(RandomPointDropout(*args[:1]))
        elif name == "cutmix":
            out.append(PointCutMix(*args[:2]))
        else:
            raise ValueError(
                f"unknown augmentation {name!r}; use rotate-x|y|z|so3, scale, "
                "shift, jitter, dropout, cutmix"
            )
    return Compose(out) if out else None


def vote_augment(names: Sequence[str]) -> tuple[str, ...]:
    r"""The test-time (voting) augmentation matching training's :obj:`names`.

    Rotations are kept and scaling is mild (``0.8:1.25``); jitter and point
    dropout, which only lose information, are left out.
    """
    out = [n for n in names if n.startswith("rotate-")]
    if any(_parse(n)[0] == "scale" for n in names):
        out.append("scale:0.8:1.25")
    return tuple(out)


def default_data_root() -> Path:
    r"""Where generated data goes: ``$ITNET_GEO_DATA`` or ``~/.cache/itnet_geo/data``.

    The ``synthetic`` dataset of the CLI is generated in its ``synthetic`` folder.
    """
    env = os.environ.get("ITNET_GEO_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/itnet_geo/data").expanduser()


__all__ = [
    "DATASET_KINDS",
    "DEFAULT_AUGMENT",
    "DataSpec",
    "build_split",
    "build_train_val",
    "carve_split",
    "labels_of",
    "shape_names",
    "build_augment",
    "vote_augment",
    "default_data_root",
]
