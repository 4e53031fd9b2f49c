import time

import numpy as np
import pytest
import torch

from itnet_geo.datasets import SHAPE_CLASSES, ModelNet, SyntheticShapes, make_shape
from itnet_geo.io import read


@pytest.fixture
def small(tmp_path):
    def build(**kwargs):
        options = dict(num_per_class=2, num_points=64, cache_dir=tmp_path / "cache")
        options.update(kwargs)
        return SyntheticShapes(tmp_path / "syn", **options)

    return build


def test_synthetic_writes_the_official_off_layout(small, tmp_path):
    ds = small()
    root = tmp_path / "syn"
    assert len(ds) == 20 and ds.num_classes == 10
    assert ds.classes == sorted(SHAPE_CLASSES[:10])
    for cls in ds.classes:
        files = sorted(p.name for p in (root / cls / "train").iterdir())
        assert files == [f"{cls}_0001.off", f"{cls}_0002.off"]
    mesh = read(root / "torus" / "train" / "torus_0001.off")
    assert mesh.face is not None and len(mesh.face) > 100
    d = ds[0]
    assert d.pos.shape == (64, 3) and d.normal.shape == (64, 3) and d.y.shape == (1,)
    torch.testing.assert_close(d.normal.norm(dim=1), torch.ones(64))
    assert [int(d.y) for d in ds] == [i for i in range(10) for _ in range(2)]


def test_synthetic_reads_back_through_modelnet(small, tmp_path):
    syn = small()
    ds = ModelNet(
        tmp_path / "syn", layout="auto", num_points=64, cache_dir=tmp_path / "c2"
    )
    assert ds.layout == "off" and ds.classes == syn.classes
    torch.testing.assert_close(ds[3].pos, syn[3].pos)


def test_synthetic_is_seeded_and_reused(small, tmp_path):
    first = small()
    path = tmp_path / "syn" / "cube" / "train" / "cube_0001.off"
    text, mtime = path.read_text(), path.stat().st_mtime_ns
    again = small()
    assert path.stat().st_mtime_ns == mtime  # not regenerated
    torch.testing.assert_close(again[5].pos, first[5].pos)
    small(seed=1)
    assert path.read_text() != text
    small(seed=0)
    assert path.read_text() == text  # same seed, same mesh


def test_synthetic_train_and_test_differ(small, tmp_path):
    small()
    small(split="test")
    train = (tmp_path / "syn" / "cube" / "train" / "cube_0001.off").read_text()
    test = (tmp_path / "syn" / "cube" / "test" / "cube_0001.off").read_text()
    assert train != test


def test_synthetic_changed_parameters_regenerate(small, tmp_path):
    small(num_per_class=3, num_classes=12)
    assert (tmp_path / "syn" / "prism" / "train" / "prism_0003.off").is_file()
    ds = small(num_per_class=2, num_classes=10)
    assert len(ds) == 20 and ds.num_classes == 10
    assert not (tmp_path / "syn" / "cube" / "train" / "cube_0003.off").exists()
    assert not (tmp_path / "syn" / "prism").exists()


def test_synthetic_classes_are_distinct_shapes():
    rng = np.random.default_rng(0)
    assert len(SHAPE_CLASSES) >= 10
    for cls in SHAPE_CLASSES:
        mesh = make_shape(cls, rng)
        assert mesh.is_watertight, cls
        assert 0.3 < float(np.abs(mesh.vertices).max()) < 3.0, cls

    # the isoperimetric ratio area / volume^(2/3) (scale and rotation invariant)
    # keeps sphere (4.84), cube (6.0) and tetrahedron (7.2) apart under deformation
    def ratio(cls, seed):
        mesh = make_shape(cls, np.random.default_rng(seed))
        return mesh.area / mesh.volume ** (2 / 3)

    for seed in range(3):
        assert ratio("sphere", seed) < 5.2 < ratio("cube", seed) < 6.6
        assert ratio("tetrahedron", seed) > 6.8


def test_synthetic_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes(tmp_path, num_classes=99)
    with pytest.raises(TypeError, match="layout"):
        SyntheticShapes(tmp_path, layout="points")


@pytest.mark.slow
def test_synthetic_default_size_is_fast(tmp_path):
    start = time.perf_counter()
    train = SyntheticShapes(tmp_path / "syn", cache_dir=tmp_path / "cache", log=False)
    test = SyntheticShapes(
        tmp_path / "syn", split="test", cache_dir=tmp_path / "cache", log=False
    )
    seconds = time.perf_counter() - start
    assert (len(train), len(test)) == (640, 160)
    assert seconds < 60
