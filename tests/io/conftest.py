"""Tiny valid files of every format, built in code (bases for tests and mutations)."""

import struct

import numpy as np
import pytest

# a unit square (two triangles) with one point off the plane
POS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.5]], dtype=np.float32
)  # fmt: skip
NORMAL = np.array([[0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
TRI = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)

PLY_HEADER = (
    "ply\nformat {fmt} 1.0\ncomment made by a test\n"
    "element vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
    "property float nx\nproperty float ny\nproperty float nz\n"
    "property uchar red\n"
    "element face 2\nproperty list uchar int vertex_indices\n"
    "element camera 1\nproperty float view_px\nproperty int viewport\n"
    "end_header\n"
)
PCD_HEADER = (
    "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
    "FIELDS x y z normal_x normal_y normal_z rgb\nSIZE 4 4 4 4 4 4 4\n"
    "TYPE F F F F F F U\nCOUNT 1 1 1 1 1 1 1\nWIDTH 4\nHEIGHT 1\n"
    "VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA {mode}\n"
)


def off_bytes() -> bytes:
    verts = "\n".join(" ".join(f"{v:g}" for v in p) for p in POS)
    faces = "\n".join("3 " + " ".join(map(str, f)) for f in TRI)
    return f"OFF\n# comment\n4 2 0\n{verts}\n{faces}\n".encode()


def obj_bytes() -> bytes:
    verts = "\n".join("v " + " ".join(f"{v:g}" for v in p) for p in POS)
    return (
        f"# test\nmtllib x.mtl\no thing\n{verts}\nvt 0 0\nvn 0 0 1\n"
        "usemtl m\ns off\nf 1/1/1 2/1/1 3/1/1\nf 1//1 3//1 4//1\n"
    ).encode()


def ply_bytes(fmt: str = "binary_little_endian") -> bytes:
    header = PLY_HEADER.format(fmt=fmt).encode()
    if fmt == "ascii":
        rows = [
            " ".join(f"{v:g}" for v in (*p, *n)) + " 7"
            for p, n in zip(POS, NORMAL, strict=True)
        ]
        rows += ["3 " + " ".join(map(str, f)) for f in TRI]
        rows += ["0.5 3"]
        return header + ("\n".join(rows) + "\n").encode()
    e = "<" if fmt == "binary_little_endian" else ">"
    body = b"".join(
        struct.pack(e + "6fB", *p, *n, 7) for p, n in zip(POS, NORMAL, strict=True)
    ) + b"".join(struct.pack(e + "B3i", 3, *f) for f in TRI)
    return header + body + struct.pack(e + "fi", 0.5, 3)


def pcd_bytes(mode: str = "binary") -> bytes:
    header = PCD_HEADER.format(mode=mode).encode()
    if mode == "ascii":
        rows = [
            " ".join(f"{v:g}" for v in (*p, *n)) + " 255"
            for p, n in zip(POS, NORMAL, strict=True)
        ]
        return header + ("\n".join(rows) + "\n").encode()
    return header + b"".join(
        struct.pack("<6fI", *p, *n, 255) for p, n in zip(POS, NORMAL, strict=True)
    )


def npy_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.concatenate([POS, NORMAL], axis=1))
    return buf.getvalue()


def txt_bytes(sep: str = ",") -> bytes:
    rows = [
        sep.join(f"{v:.6f}" for v in (*p, *n)) for p, n in zip(POS, NORMAL, strict=True)
    ]
    return ("\n".join(rows) + "\n").encode()


def h5_bytes(tmp_path_factory) -> bytes:
    import h5py

    path = tmp_path_factory.mktemp("h5") / "batch.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.stack([POS, POS * 2])
        f["label"] = np.array([[3], [5]], dtype=np.uint8)
    return path.read_bytes()


@pytest.fixture(scope="session")
def valid_files(tmp_path_factory) -> dict:
    """File name -> bytes of one small valid file per format and encoding."""
    return {
        "mesh.off": off_bytes(),
        "mesh.obj": obj_bytes(),
        "ascii.ply": ply_bytes("ascii"),
        "le.ply": ply_bytes("binary_little_endian"),
        "be.ply": ply_bytes("binary_big_endian"),
        "ascii.pcd": pcd_bytes("ascii"),
        "binary.pcd": pcd_bytes("binary"),
        "cloud.npy": npy_bytes(),
        "cloud.txt": txt_bytes(","),
        "cloud.csv": txt_bytes(" "),
        "batch.h5": h5_bytes(tmp_path_factory),
    }
