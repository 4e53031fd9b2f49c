import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NORMAL, POS, TRI

from itnet_geo.io import (
    SUPPORTED_EXTENSIONS,
    ReadError,
    Record,
    read,
    read_h5,
    read_npy,
    read_obj,
    read_off,
    read_pcd,
    read_ply,
    read_txt,
)

HAS_NORMALS = {"ascii.ply", "le.ply", "be.ply", "ascii.pcd", "binary.pcd"}
HAS_NORMALS |= {"cloud.npy", "cloud.txt", "cloud.csv"}
HAS_FACES = {"mesh.off", "mesh.obj", "ascii.ply", "le.ply", "be.ply"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_supported_extensions():
    assert SUPPORTED_EXTENSIONS == (
        ".off", ".obj", ".ply", ".pcd", ".npy", ".txt", ".csv", ".h5", ".hdf5"
    )  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["mesh.off", "mesh.obj", "ascii.ply", "le.ply", "be.ply", "ascii.pcd",
     "binary.pcd", "cloud.npy", "cloud.txt", "cloud.csv"],
)  # fmt: skip
def test_every_format_reads_the_same_shape(tmp_path, valid_files, name):
    rec = read(write(tmp_path, name, valid_files[name]))
    assert isinstance(rec, Record)
    assert rec.pos.dtype == np.float32 and rec.pos.shape == (4, 3)
    np.testing.assert_allclose(rec.pos, POS, atol=1e-6)
    if name in HAS_FACES:
        assert rec.face.dtype == np.int64
        np.testing.assert_array_equal(rec.face, TRI)
    else:
        assert rec.face is None
    if name in HAS_NORMALS:
        assert rec.normal.dtype == np.float32
        np.testing.assert_allclose(rec.normal, NORMAL, atol=1e-6)
    else:
        assert rec.normal is None
    assert rec.label is None


def test_h5_batch(tmp_path, valid_files):
    rec = read(write(tmp_path, "batch.h5", valid_files["batch.h5"]))
    assert rec.pos.shape == (2, 4, 3) and rec.pos.dtype == np.float32
    np.testing.assert_allclose(rec.pos[1], 2 * POS)
    assert rec.label.dtype == np.int64 and rec.label.tolist() == [3, 5]
    assert rec.face is None and rec.normal is None


@pytest.mark.parametrize(
    "name, reader",
    [("x.OFF", read_off), ("x.Obj", read_obj), ("x.PLY", read_ply),
     ("x.PCD", read_pcd), ("x.NPY", read_npy), ("x.TXT", read_txt),
     ("x.CSV", read_txt), ("x.H5", read_h5), ("x.HDF5", read_h5)],
)  # fmt: skip
def test_dispatch_is_case_insensitive(tmp_path, valid_files, name, reader):
    source = {".off": "mesh.off", ".obj": "mesh.obj", ".ply": "le.ply",
              ".pcd": "binary.pcd", ".npy": "cloud.npy", ".txt": "cloud.txt",
              ".csv": "cloud.csv", ".h5": "batch.h5", ".hdf5": "batch.h5"}  # fmt: skip
    path = write(tmp_path, name, valid_files[source[name[1:].lower()]])
    ours, theirs = read(path), reader(str(path))
    np.testing.assert_array_equal(ours.pos, theirs.pos)


def test_unknown_extension(tmp_path):
    path = write(tmp_path, "shape.stl", b"solid x")
    with pytest.raises(
        ReadError, match=r"shape\.stl: unsupported file extension '\.stl'"
    ):
        read(path)
    with pytest.raises(ReadError, match="unsupported file extension '\\(none\\)'"):
        read(tmp_path / "noext")


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_missing_file_and_directory(tmp_path, ext):
    with pytest.raises(ReadError, match="no such file") as info:
        read(tmp_path / f"missing{ext}")
    assert info.value.path == str(tmp_path / f"missing{ext}")
    folder = tmp_path / f"folder{ext}"
    folder.mkdir()
    with pytest.raises(ReadError, match="directory"):
        read(folder)


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_empty_file(tmp_path, ext):
    with pytest.raises(ReadError, match="empty file"):
        read(write(tmp_path, f"empty{ext}", b""))


def test_read_error_message_and_fields():
    err = ReadError("a/b.off", "expected 3 vertex coordinates, got 2", line=3)
    assert str(err) == "a/b.off: line 3: expected 3 vertex coordinates, got 2"
    assert isinstance(err, ValueError)
    assert (err.path, err.line, err.offset) == ("a/b.off", 3, None)
    err = ReadError("c.ply", "truncated", offset=120)
    assert str(err) == "c.ply: byte 120: truncated"
    assert str(ReadError("d.npy", "empty file")) == "d.npy: empty file"
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.offset, copy.reason) == (str(err), 120, "truncated")


def test_record_casts_and_checks():
    rec = Record(pos=np.zeros((2, 3), np.float64), face=np.array([[0, 1, 1]]))
    assert rec.pos.dtype == np.float32 and rec.face.dtype == np.int64
    assert repr(rec) == "Record(pos=[2, 3], face=[1, 3])"
    with pytest.raises(ValueError, match="pos must have shape"):
        Record(pos=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="normal must have the shape of pos"):
        Record(pos=np.zeros((2, 3)), normal=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="face must have shape"):
        Record(pos=np.zeros((2, 3)), face=np.zeros((2, 4)))
    with pytest.raises(AttributeError):
        rec.pos = np.ones((2, 3))


def test_io_imports_numpy_only():
    code = (
        "import sys, itnet_geo.io; "
        "print(sorted(m for m in ('torch', 'torch_geometric', 'trimesh', 'h5py') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
