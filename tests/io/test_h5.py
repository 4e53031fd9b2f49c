import h5py
import numpy as np
import pytest

from itnet_geo.io import ReadError, read, read_h5

DATA = np.random.default_rng(0).normal(size=(3, 8, 3)).astype(np.float32)


def make(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, (value, kwargs) in datasets.items():
            f.create_dataset(name, data=value, **kwargs)
    return path


@pytest.mark.parametrize(
    "label", [np.array([[1], [2], [39]], np.uint8), np.array([1, 2, 39], np.int64),
              np.array([1.0, 2.0, 39.0])],
)  # fmt: skip
def test_ply_hdf5_2048_layout(tmp_path, label):
    path = make(tmp_path / "ply_data_train0.h5", data=(DATA, {}), label=(label, {}))
    rec = read_h5(path)
    np.testing.assert_array_equal(rec.pos, DATA)
    assert rec.label.dtype == np.int64 and rec.label.tolist() == [1, 2, 39]
    assert rec.normal is None and rec.face is None


def test_normals_gzip_and_hdf5_extension(tmp_path):
    normal = DATA / np.linalg.norm(DATA, axis=-1, keepdims=True)
    path = make(
        tmp_path / "b.hdf5",
        data=(DATA, {"compression": "gzip", "chunks": (1, 8, 3)}),
        normal=(normal, {}),
    )
    rec = read(path)
    np.testing.assert_array_equal(rec.pos, DATA)
    np.testing.assert_allclose(rec.normal, normal)
    assert rec.label is None


def test_declared_huge_unwritten_dataset_is_refused(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "data", shape=(10**6, 2048, 3), dtype="f4", chunks=(1, 2048, 3)
        )
    with pytest.raises(ReadError, match=r"'data' declares shape \(1000000, 2048, 3\)"):
        read_h5(path)
