"""Tiny shape files for the dataset tests, written with numpy / h5py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A unit cube centred at the origin: 8 vertices, 12 triangles, area 6.
CUBE_V = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)],
    dtype=np.float64,
)
CUBE_F = np.array(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],
        [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
        [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]
)  # fmt: skip
TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(f"{x:.6f}" for x in v) for v in vertices]
    lines += ["3 " + " ".join(str(i) for i in f) for f in faces]
    _mkparent(path).write_text("\n".join(lines) + "\n")
    return path


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    lines = [f"v {v[0]:.6f} {v[1]:.6f} {v[2]:.6f}" for v in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in f) for f in faces]
    _mkparent(path).write_text("\n".join(lines) + "\n")
    return path


def write_ply(
    path: Path, vertices: np.ndarray, faces: np.ndarray | None = None
) -> Path:
    header = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if faces is not None:
        header += [
            f"element face {len(faces)}",
            "property list uchar int vertex_indices",
        ]
    header.append("end_header")
    body = [" ".join(f"{x:.6f}" for x in v) for v in vertices]
    if faces is not None:
        body += ["3 " + " ".join(str(i) for i in f) for f in faces]
    _mkparent(path).write_text("\n".join(header + body) + "\n")
    return path


def write_npy(path: Path, points: np.ndarray) -> Path:
    np.save(_mkparent(path), np.asarray(points, dtype=np.float32))
    return path


def write_pcd(path: Path, points: np.ndarray) -> Path:
    points = np.asarray(points, dtype=np.float32)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\n"
        "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        f"WIDTH {len(points)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {len(points)}\nDATA binary\n"
    )
    _mkparent(path).write_bytes(header.encode() + points.tobytes())
    return path


def write_txt(
    path: Path, points: np.ndarray, normals: np.ndarray | None = None
) -> Path:
    rows = points if normals is None else np.concatenate([points, normals], axis=1)
    np.savetxt(_mkparent(path), rows, fmt="%.6f", delimiter=",")
    return path


def write_h5(path: Path, data: np.ndarray, label: np.ndarray, normal=None) -> Path:
    import h5py

    with h5py.File(_mkparent(path), "w") as handle:
        handle.create_dataset("data", data=np.asarray(data, dtype=np.float32))
        handle.create_dataset("label", data=np.asarray(label, dtype=np.uint8)[:, None])
        if normal is not None:
            handle.create_dataset("normal", data=np.asarray(normal, dtype=np.float32))
    return path


def cloud(seed: int, n: int = 100) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
