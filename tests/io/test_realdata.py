"""The real benchmark files in ../shared/data load with finite coordinates."""

import numpy as np
import pytest

from itnet_geo.io import read

pytestmark = pytest.mark.realdata


def finite_cloud(rec, n=None):
    assert rec.pos.dtype == np.float32 and rec.pos.ndim == 2 and rec.pos.shape[1] == 3
    assert np.isfinite(rec.pos).all()
    if n is not None:
        assert len(rec.pos) == n


def test_every_shrec_obj_loads(shared_data):
    files = sorted(shared_data.glob("shrec_16/*/train/*.obj"))
    if not files:
        pytest.skip("no SHREC files")
    for path in files:
        rec = read(path)
        finite_cloud(rec)
        assert rec.face is not None and len(rec.face) > 0
        assert rec.face.min() >= 0 and rec.face.max() < len(rec.pos)


def test_modelnet40_npy_sample_loads(shared_data):
    files = sorted(shared_data.glob("ModelNet40/*/train/*.npy"))
    if not files:
        pytest.skip("no ModelNet40 files")
    for path in files[:: max(1, len(files) // 200)]:  # ~200 spread over the classes
        rec = read(path)
        finite_cloud(rec, 1024)
        assert np.abs(rec.pos).max() <= 1.0 + 1e-5  # unit sphere, as documented


def test_modelnet10_pcd_sample_loads(shared_data):
    files = sorted(shared_data.glob("ModelNet10_pcd_sample/*/train/*.pcd"))
    if not files:
        pytest.skip("no PCD sample")
    for path in files:
        finite_cloud(read(path), 1024)
