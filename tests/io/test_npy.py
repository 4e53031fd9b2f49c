import numpy as np
import pytest

from itnet_geo.io import read_npy


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8", "<f2", "<i2", ">u4"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_dtypes_byte_orders_and_layouts(tmp_path, dtype, order):
    values = np.arange(12).reshape(4, 3).astype(dtype)
    path = tmp_path / "p.npy"
    np.save(path, np.asarray(values, order=order))
    rec = read_npy(path)
    assert rec.pos.dtype == np.float32 and rec.normal is None
    np.testing.assert_array_equal(rec.pos, np.arange(12).reshape(4, 3))


def test_six_columns_are_xyz_and_normals(tmp_path):
    values = np.random.default_rng(0).normal(size=(5, 6))
    path = tmp_path / "p.npy"
    np.save(path, values)
    rec = read_npy(path)
    np.testing.assert_allclose(rec.pos, values[:, :3].astype(np.float32))
    np.testing.assert_allclose(rec.normal, values[:, 3:].astype(np.float32))


def test_npy_version_2_header(tmp_path):
    path = tmp_path / "p.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ones((2, 3), np.float32), version=(2, 0))
    assert read_npy(path).pos.tolist() == [[1, 1, 1], [1, 1, 1]]
