"""A seeded, procedurally generated ModelNet-style set of labelled shapes."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import trimesh

from itnet_geo._atomic import write_atomic
from itnet_geo.datasets.modelnet import ModelNet


def _polyhedron(vertices: np.ndarray) -> trimesh.Trimesh:
    return trimesh.Trimesh(vertices=vertices).convex_hull


def _hemisphere() -> trimesh.Trimesh:
    # A quarter circle and its floor radius, revolved about z: a closed dome.
    angle = np.linspace(0.0, math.pi / 2, 7)
    profile = np.column_stack(
        [np.concatenate([[0.0], np.cos(angle)]), np.concatenate([[0.0], np.sin(angle)])]
    )
    return trimesh.creation.revolve(profile, sections=20)


#: Class name -> base mesh (roughly unit size, centred).
_SHAPES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=2),
    "cube": lambda: trimesh.creation.box(extents=(1.6, 1.6, 1.6)),
    "cylinder": lambda: trimesh.creation.cylinder(radius=0.8, height=1.8, sections=24),
    "cone": lambda: trimesh.creation.cone(radius=1.0, height=1.8, sections=24),
    "torus": lambda: trimesh.creation.torus(
        major_radius=0.75, minor_radius=0.25, major_sections=24, minor_sections=12
    ),
    "capsule": lambda: trimesh.creation.capsule(height=1.4, radius=0.45, count=(16, 8)),
    "tetrahedron": lambda: _polyhedron(
        np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    ),
    "pyramid": lambda: trimesh.creation.cone(radius=1.1, height=1.4, sections=4),
    "ellipsoid": lambda: trimesh.creation.icosphere(subdivisions=2).apply_scale(
        (1.0, 0.55, 0.3)
    ),
    "octahedron": lambda: _polyhedron(np.concatenate([np.eye(3), -np.eye(3)])),
    "prism": lambda: trimesh.creation.cylinder(radius=1.0, height=1.6, sections=3),
    "ring": lambda: trimesh.creation.annulus(r_min=0.6, r_max=1.0, height=0.3),
    "hemisphere": _hemisphere,
}
#: The class names, in the order :obj:`num_classes` takes them.
SHAPE_CLASSES: tuple[str, ...] = tuple(_SHAPES)

# Bump when generation changes: files of another version are regenerated.
_GENERATOR_VERSION = 1
_FILE = re.compile(r"^(?P<cls>.+)_(?P<num>\d{4,})\.off$")


def make_shape(cls: str, rng: np.random.Generator) -> trimesh.Trimesh:
    r"""One random instance of class :obj:`cls`.

    The base mesh is subdivided to edges of at most 0.5, then randomly
    deformed: anisotropic scale in :math:`[0.8, 1.25]^3`, overall scale in
    :math:`[0.6, 1.4]`, a rotation about the up axis ``z``, and Gaussian vertex
    noise of 1% of the size.
    """
    base = _SHAPES[cls]()
    vertices, faces = trimesh.remesh.subdivide_to_size(
        base.vertices, base.faces, max_edge=0.5, max_iter=6
    )
    vertices = vertices - vertices.mean(axis=0)
    vertices = vertices * rng.uniform(0.8, 1.25, size=3)
    scale = rng.uniform(0.6, 1.4)
    angle = rng.uniform(0.0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    vertices = scale * vertices @ rot.T
    vertices = vertices + rng.normal(0.0, 0.01 * scale, size=vertices.shape)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def off_text(vertices: np.ndarray, faces: np.ndarray) -> str:
    r"""An OFF file for a triangle mesh."""
    head = f"OFF\n{len(vertices)} {len(faces)} 0\n"
    v = "\n".join(
        map("%.6f %.6f %.6f".__mod__, map(tuple, np.asarray(vertices).tolist()))
    )
    f = "\n".join(map("3 %d %d %d".__mod__, map(tuple, np.asarray(faces).tolist())))
    return head + v + "\n" + f + "\n"


def generate(
    root: str | os.PathLike,
    split: str,
    num_per_class: int,
    num_classes: int,
    seed: int,
) -> list[str]:
    r"""Write the split's meshes to ``<root>/<class>/<split>/<class>_NNNN.off``.

    Deterministic in ``(seed, split, class, index)``. Skipped when the marker
    ``<root>/.synthetic-<split>.json`` records the same parameters and the files
    are there; otherwise the split's generated files are (re)written, each
    atomically, stale ones of this generator removed, and the marker written last.

    Returns:
        list[str]: The class names.
    """
    root = Path(root)
    classes = list(SHAPE_CLASSES[:num_classes])
    params = {
        "version": _GENERATOR_VERSION,
        "num_per_class": num_per_class,
        "classes": classes,
        "seed": seed,
    }
    marker = root / f".synthetic-{split}.json"
    names = {c: [f"{c}_{i + 1:04d}.off" for i in range(num_per_class)] for c in classes}
    try:
        current = json.loads(marker.read_text()) == params
    except (OSError, ValueError):
        current = False
    if current and all(
        (root / c / split / n).is_file() for c in classes for n in names[c]
    ):
        return classes
    if marker.exists():
        marker.unlink()
    split_index = {"train": 0, "test": 1}[split]
    for label, cls in enumerate(SHAPE_CLASSES):
        folder = root / cls / split
        wanted = set(names.get(cls, ()))
        if folder.is_dir():
            for path in folder.iterdir():
                match = _FILE.match(path.name)
                if match and match.group("cls") == cls and path.name not in wanted:
                    path.unlink()
            if cls not in names and not any(folder.iterdir()):
                folder.rmdir()
                if not any(folder.parent.iterdir()):
                    folder.parent.rmdir()
        for i, name in enumerate(names.get(cls, ())):
            rng = np.random.default_rng([seed, split_index, label, i])
            mesh = make_shape(cls, rng)
            text = off_text(mesh.vertices, mesh.faces)
            write_atomic(folder / name, text)
    write_atomic(marker, json.dumps(params), durable=True)
    return classes


class SyntheticShapes(ModelNet):
    r"""Procedural labelled shapes: the offline default dataset.

    Generates :obj:`num_per_class` random instances of each of the first
    :obj:`num_classes` classes of :data:`SHAPE_CLASSES` (sphere, cube, cylinder,
    cone, torus, capsule, tetrahedron, pyramid, ellipsoid, octahedron, prism,
    ring, hemisphere) with :mod:`trimesh.creation` primitives under random
    anisotropic deformation, scale, rotation about ``z`` and vertex noise
    (:func:`make_shape`), writes them once in the official ModelNet OFF layout
    ``<root>/<class>/{train,test}/<class>_NNNN.off`` (atomically, re-used while
    the parameters match), and reads them back through :class:`ModelNet`'s
    ``"off"`` layout — area-weighted surface sampling with normals, caching and
    all. Train and test instances are drawn from independent streams of
    :obj:`seed`.

    Args:
        root (str or os.PathLike): Folder the meshes are written to (created).
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        num_per_class (int, optional): Shapes per class; :obj:`None` for 64 in
            train and 16 in test. (default: :obj:`None`)
        num_classes (int, optional): Number of classes, at most
            ``len(SHAPE_CLASSES)``. (default: :obj:`10`)
        seed (int, optional): Generation and sampling seed. (default: :obj:`0`)
        num_points (int, optional): Points sampled per shape.
            (default: :obj:`1024`)
        **kwargs (optional): ``include_normals``, ``transform``,
            ``pre_transform``, ``pre_filter``, ``cache_dir``, ``force_reload``,
            ``log`` as in :class:`ModelNet`.

    Shapes:
        - **pos**, **normal:** :math:`(\text{num\_points}, 3)`
        - **y:** :math:`(1,)`

    Example:
        >>> import tempfile
        >>> tmp = tempfile.mkdtemp()
        >>> ds = SyntheticShapes(tmp, num_per_class=2, num_points=128, cache_dir=tmp)
        >>> len(ds), ds.classes[:3], ds[0].pos.shape
        (20, ['capsule', 'cone', 'cube'], torch.Size([128, 3]))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_per_class: Optional[int] = None,
        num_classes: int = 10,
        seed: int = 0,
        num_points: int = 1024,
        **kwargs,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not 1 <= num_classes <= len(SHAPE_CLASSES):
            raise ValueError(
                f"num_classes must be in [1, {len(SHAPE_CLASSES)}], got {num_classes}"
            )
        if num_per_class is None:
            num_per_class = 64 if split == "train" else 16
        if num_per_class < 1:
            raise ValueError(f"num_per_class must be positive, got {num_per_class}")
        for key in ("name", "layout", "on_error"):
            if key in kwargs:
                raise TypeError(f"SyntheticShapes does not take {key!r}")
        self.num_per_class = num_per_class
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
        self.generated_classes = generate(
            Path(root).expanduser(), split, num_per_class, num_classes, seed
        )
        super().__init__(
            root,
            split=split,
            layout="off",
            num_points=num_points,
            seed=seed,
            **kwargs,
        )

    def _restrict(self, classes: list[str]) -> list[str]:
        # Only this generation's classes, whatever else the root holds.
        return sorted(self.generated_classes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)}, split={self.split}, "
            f"num_classes={self.num_classes})"
        )
