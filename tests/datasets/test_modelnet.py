import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from shape_files import (
    CUBE_F,
    CUBE_V,
    cloud,
    write_h5,
    write_npy,
    write_off,
    write_pcd,
    write_ply,
    write_txt,
)
from torch_geometric.loader import DataLoader

from itnet_geo.datasets import MODELNET10_CLASSES, ModelNet, detect_layout
from itnet_geo.io import ReadError
from itnet_geo.transforms import NormalizeUnitSphere

# -- official OFF meshes --------------------------------------------------------------


def test_off_layout_samples_surfaces(off_root, cache_dir):
    ds = ModelNet(off_root, num_points=64, cache_dir=cache_dir)
    assert ds.layout == "off"
    assert ds.classes == ["cube", "tetra"] and ds.num_classes == 2
    assert len(ds) == 3
    assert [int(d.y) for d in ds] == [0, 0, 1]
    cube, cube2 = ds[0], ds[1]
    assert cube.pos.shape == (64, 3) and cube.normal.shape == (64, 3)
    assert cube.pos.dtype == torch.float32 and cube.y.shape == (1,)
    # every sample lies on a face of the cube: one coordinate at +-0.5
    on_face = (cube.pos.abs() - 0.5).abs().min(dim=1).values
    assert float(on_face.max()) < 1e-5
    assert float(cube.pos.abs().max()) <= 0.5 + 1e-6
    assert float(cube2.pos.abs().max()) > 0.5  # the second cube is twice as large
    # face normals: unit, axis-aligned, pointing along the coordinate at +-0.5
    torch.testing.assert_close(cube.normal.norm(dim=1), torch.ones(64))
    axis = cube.normal.abs().argmax(dim=1)
    assert torch.allclose(cube.pos.gather(1, axis[:, None]).abs(), torch.tensor(0.5))


def test_shapes_are_named_by_their_file(off_root, cache_dir):
    ds = ModelNet(off_root, num_points=16, cache_dir=cache_dir)
    expected = [
        "cube/train/cube_0001.off",
        "cube/train/cube_0002.off",
        "tetra/train/tetra_0001.off",
    ]
    assert ds.names == expected
    assert ModelNet(off_root, num_points=16, cache_dir=cache_dir).names == expected
    # a pre_filter drops the name with the shape
    small = ModelNet(
        off_root,
        num_points=16,
        pre_filter=_smaller_than_one,
        cache_dir=cache_dir,
    )
    assert small.names == [expected[0], expected[2]]


def _smaller_than_one(data):
    return bool(data.pos.abs().max() < 1.0)


def test_cache_entry_without_names_is_rebuilt(off_root, cache_dir):
    ds = ModelNet(off_root, num_points=16, cache_dir=cache_dir)
    manifest_path = ds.cache_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["names"]  # as written before shapes were named
    manifest_path.write_text(json.dumps(manifest))
    again = ModelNet(off_root, num_points=16, cache_dir=cache_dir)
    assert again.names == ds.names
    assert "names" in json.loads(manifest_path.read_text())


def test_off_layout_is_seeded(off_root, cache_dir):
    a = ModelNet(off_root, num_points=32, seed=1, cache_dir=cache_dir)
    b = ModelNet(
        off_root, num_points=32, seed=1, cache_dir=cache_dir, force_reload=True
    )
    c = ModelNet(off_root, num_points=32, seed=2, cache_dir=cache_dir)
    torch.testing.assert_close(a[0].pos, b[0].pos)
    assert not torch.allclose(a[0].pos, c[0].pos)
    assert a.cache_path != c.cache_path


def test_off_layout_test_split_and_loader(off_root, cache_dir):
    ds = ModelNet(off_root, split="test", num_points=16, cache_dir=cache_dir)
    assert len(ds) == 2 and ds.classes == ["cube", "tetra"]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.pos.shape == (32, 3) and batch.y.tolist() == [0, 1]
    assert batch.batch.tolist() == [0] * 16 + [1] * 16


def test_off_layout_needs_num_points(off_root, cache_dir):
    with pytest.raises(ValueError, match="num_points"):
        ModelNet(off_root, num_points=None, cache_dir=cache_dir)


# -- per-shape point files ------------------------------------------------------------


def test_points_layout_subsamples_large_clouds_only(npy_root, cache_dir):
    ds = ModelNet(npy_root, num_points=64, cache_dir=cache_dir)
    assert ds.layout == "points" and ds.classes == ["a", "b"]
    assert [d.num_nodes for d in ds] == [64, 64, 64, 40, 40]
    assert "normal" not in ds[0]
    # a subsample: distinct rows of the file, in file order
    original = torch.from_numpy(cloud(0, 100))
    rows = (ds[0].pos[:, None, :] == original[None]).all(-1).float().argmax(1)
    torch.testing.assert_close(original[rows], ds[0].pos)
    assert rows.unique().numel() == 64 and bool((rows.diff() > 0).all())
    # a small cloud is kept whole
    torch.testing.assert_close(ds[3].pos, torch.from_numpy(cloud(10, 40)))


def test_points_layout_num_points_none_keeps_all(npy_root, cache_dir):
    ds = ModelNet(npy_root, num_points=None, cache_dir=cache_dir)
    assert [d.num_nodes for d in ds] == [100, 100, 100, 40, 40]


def test_points_layout_mixed_formats(tmp_path, cache_dir):
    root = tmp_path / "mixed"
    write_pcd(root / "chair" / "train" / "chair_0001.pcd", cloud(0, 50) * 1e4)
    write_ply(root / "chair" / "train" / "chair_0002.ply", cloud(1, 50))
    write_txt(root / "desk" / "train" / "desk_0001.txt", cloud(2, 50))
    write_npy(root / "desk" / "train" / "desk_0002.npy", cloud(3, 50))
    write_ply(root / "desk" / "train" / "desk_0003.ply", CUBE_V, CUBE_F)  # a mesh
    # only the mesh has normals (sampled): they are dropped, with a warning
    with pytest.warns(UserWarning, match=r"'normal' \(1 of 5\)"):
        ds = ModelNet(root, num_points=50, cache_dir=cache_dir)
    assert ds.layout == "points" and len(ds) == 5
    torch.testing.assert_close(ds[0].pos, torch.from_numpy(cloud(0, 50) * 1e4))
    assert ds[4].num_nodes == 50 and "normal" not in ds[4]
    assert float(ds[4].pos.abs().max()) <= 0.5 + 1e-6  # sampled on the cube
    assert [int(d.y) for d in ds] == [0, 0, 1, 1, 1]


def test_pcd_normalised_by_pre_transform(tmp_path, cache_dir):
    root = tmp_path / "pcd"
    write_pcd(root / "sofa" / "train" / "sofa_0001.pcd", cloud(0, 64) * 3e4 + 1e4)
    ds = ModelNet(root, pre_transform=NormalizeUnitSphere(), cache_dir=cache_dir)
    pos = ds[0].pos
    assert torch.isfinite(pos).all()
    assert abs(float(pos.norm(dim=1).max()) - 1) < 1e-5
    assert float(pos.mean(0).abs().max()) < 1e-5


# -- modelnet40_normal_resampled ------------------------------------------------------


def _normal_resampled(root: Path) -> Path:
    # names deliberately unsorted: labels must index the sorted class list
    (root).mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("night_stand\nairplane\nbed\n")
    (root / "modelnet40_train.txt").write_text(
        "airplane_0001\nnight_stand_0001\nbed_0001\nairplane_0002\n"
    )
    (root / "modelnet40_test.txt").write_text("bed_0002\n")
    (root / "modelnet10_shape_names.txt").write_text("bed\nnight_stand\n")
    (root / "modelnet10_train.txt").write_text("night_stand_0001\nbed_0001\n")
    (root / "modelnet10_test.txt").write_text("bed_0002\n")
    for i, shape in enumerate(
        ["airplane_0001", "airplane_0002", "night_stand_0001", "bed_0001", "bed_0002"]
    ):
        cls = shape.rsplit("_", 1)[0]
        pts = cloud(i, 120)
        normals = pts / np.linalg.norm(pts, axis=1, keepdims=True)
        write_txt(root / cls / f"{shape}.txt", pts, normals)
    return root


def test_normal_resampled_layout(tmp_path, cache_dir):
    root = _normal_resampled(tmp_path / "modelnet40_normal_resampled")
    assert detect_layout(root) == "normal_resampled"
    ds = ModelNet(root, num_points=100, cache_dir=cache_dir)
    assert ds.classes == ["airplane", "bed", "night_stand"]
    assert [int(d.y) for d in ds] == [0, 2, 1, 0]  # file order, sorted labels
    d = ds[0]
    assert d.pos.shape == (100, 3) and d.normal.shape == (100, 3)
    # normals travel with their points through the subsampling
    expected = d.pos / d.pos.norm(dim=1, keepdim=True)
    torch.testing.assert_close(d.normal, expected, atol=1e-5, rtol=0)
    test = ModelNet(root, split="test", num_points=100, cache_dir=cache_dir)
    assert len(test) == 1 and int(test[0].y) == 1


def test_normal_resampled_modelnet10_lists(tmp_path, cache_dir):
    root = _normal_resampled(tmp_path / "nr")
    ds = ModelNet(root, name="10", num_points=100, cache_dir=cache_dir)
    assert ds.classes == ["bed", "night_stand"] and len(ds) == 2
    assert [int(d.y) for d in ds] == [1, 0]


def test_normal_resampled_without_normals(tmp_path, cache_dir):
    root = _normal_resampled(tmp_path / "nr")
    ds = ModelNet(root, include_normals=False, num_points=100, cache_dir=cache_dir)
    assert "normal" not in ds[0]


# -- ply_hdf5_2048 --------------------------------------------------------------------


def _h5_root(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root).mkdir(parents=True)
    (root / "shape_names.txt").write_text("toilet\nairplane\nbed\n")
    data = rng.normal(size=(5, 200, 3))
    normal = data / np.linalg.norm(data, axis=2, keepdims=True)
    write_h5(root / "ply_data_train0.h5", data[:3], [0, 1, 2], normal[:3])
    write_h5(root / "ply_data_train1.h5", data[3:], [1, 1], normal[3:])
    write_h5(root / "ply_data_test0.h5", data[:2], [2, 0])
    (root / "train_files.txt").write_text("ply_data_train0.h5\nply_data_train1.h5\n")
    return root


def test_h5_layout(tmp_path, cache_dir):
    root = _h5_root(tmp_path / "modelnet40_ply_hdf5_2048")
    assert detect_layout(root) == "ply_hdf5_2048"
    ds = ModelNet(root, num_points=128, cache_dir=cache_dir)
    assert ds.classes == ["airplane", "bed", "toilet"]
    # file labels [toilet, airplane, bed | airplane, airplane] -> sorted indices
    assert [int(d.y) for d in ds] == [2, 0, 1, 0, 0]
    assert ds[0].pos.shape == (128, 3) and ds[0].normal.shape == (128, 3)
    expected = ds[0].pos / ds[0].pos.norm(dim=1, keepdim=True)
    torch.testing.assert_close(ds[0].normal, expected, atol=1e-5, rtol=0)
    test = ModelNet(root, split="test", num_points=128, cache_dir=cache_dir)
    assert [int(d.y) for d in test] == [1, 2] and "normal" not in test[0]
    # shapes of an h5 file are named by their record in it
    assert ds.names == [
        "ply_data_train0.h5#0",
        "ply_data_train0.h5#1",
        "ply_data_train0.h5#2",
        "ply_data_train1.h5#0",
        "ply_data_train1.h5#1",
    ]
    assert "source_index" not in ds[0]


def test_h5_label_out_of_range(tmp_path, cache_dir):
    root = _h5_root(tmp_path / "h5")
    write_h5(root / "ply_data_train2.h5", cloud(0, 30)[None], [7])
    with pytest.raises(ReadError, match="label 7"):
        ModelNet(root, num_points=16, cache_dir=cache_dir)
    with pytest.warns(UserWarning, match="ply_data_train2.h5"):
        ds = ModelNet(root, num_points=16, on_error="skip", cache_dir=cache_dir)
    assert len(ds) == 5 and len(ds.skipped) == 1


def test_name_10_restricts_a_larger_root(tmp_path, cache_dir):
    root = tmp_path / "mn"
    for cls in (*MODELNET10_CLASSES, "airplane"):
        write_npy(root / cls / "train" / f"{cls}_0001.npy", cloud(0, 8))
    assert ModelNet(root, name="40", cache_dir=cache_dir).num_classes == 11
    ds = ModelNet(root, name="10", cache_dir=cache_dir)
    assert ds.classes == sorted(MODELNET10_CLASSES) and len(ds) == 10
    assert [int(d.y) for d in ds] == list(range(10))


def test_h5_names_keep_record_indices_when_classes_are_left_out(tmp_path, cache_dir):
    root = tmp_path / "h5"
    root.mkdir()
    names = [*MODELNET10_CLASSES, "airplane"]
    (root / "shape_names.txt").write_text("\n".join(names) + "\n")
    # records 0 and 2 are ModelNet10 classes, record 1 (airplane) is not
    labels = [0, len(names) - 1, 1]
    write_h5(
        root / "ply_data_train0.h5", np.stack([cloud(i, 20) for i in range(3)]), labels
    )
    (root / "train_files.txt").write_text("ply_data_train0.h5\n")
    ds = ModelNet(root, name="10", num_points=16, cache_dir=cache_dir)
    assert ds.names == ["ply_data_train0.h5#0", "ply_data_train0.h5#2"]


# -- layout detection, roots with one split -------------------------------------------


def test_detect_layout_and_errors(tmp_path, off_root, npy_root):
    assert detect_layout(off_root) == "off"
    assert detect_layout(npy_root) == "points"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="ply_data_.*normal_resampled"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ModelNet(tmp_path / "missing")
    with pytest.raises(ValueError, match="layout"):
        ModelNet(off_root, layout="zip")
    with pytest.raises(ValueError, match="name"):
        ModelNet(off_root, name="20")
    with pytest.raises(ValueError, match="split"):
        ModelNet(off_root, split="val")


def test_one_split_root(npy_root, cache_dir):
    assert len(ModelNet(npy_root, split="train", cache_dir=cache_dir)) == 5
    with pytest.raises(FileNotFoundError) as info:
        ModelNet(npy_root, split="test", cache_dir=cache_dir)
    message = str(info.value)
    assert "'test'" in message and "<class>/test/*" in message and "'train'" in message


def test_one_split_root_other_layouts(tmp_path, cache_dir):
    nr = _normal_resampled(tmp_path / "nr")
    (nr / "modelnet40_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="modelnet40_test.txt"):
        ModelNet(nr, split="test", cache_dir=cache_dir)
    h5 = _h5_root(tmp_path / "h5")
    (h5 / "ply_data_test0.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"ply_data_test\*\.h5"):
        ModelNet(h5, split="test", cache_dir=cache_dir)


# -- bad files ------------------------------------------------------------------------


def test_on_error_raise_names_the_file(off_root, cache_dir):
    bad = off_root / "cube" / "train" / "cube_0009.off"
    bad.write_text("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(ReadError) as info:
        ModelNet(off_root, num_points=8, cache_dir=cache_dir)
    assert info.value.path == str(bad)


def test_on_error_skip_one_warning(off_root, cache_dir):
    bad1 = off_root / "cube" / "train" / "cube_0009.off"
    bad1.write_text("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n")
    bad2 = off_root / "tetra" / "train" / "tetra_0009.off"  # all faces degenerate
    write_off(bad2, np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ModelNet(off_root, num_points=8, on_error="skip", cache_dir=cache_dir)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    assert "skipped 2 of 5" in messages[0]
    assert str(bad1) in messages[0] and str(bad2) in messages[0]
    assert len(ds) == 3
    assert [p for p, _ in ds.skipped] == [str(bad1), str(bad2)]
    assert "positive area" in ds.skipped[1][1]
    assert "line" in ds.skipped[0][1]


def test_all_files_bad_is_an_error(tmp_path, cache_dir):
    root = tmp_path / "bad"
    (root / "a" / "train").mkdir(parents=True)
    (root / "a" / "train" / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="no shape left"):
        ModelNet(root, on_error="skip", cache_dir=cache_dir)


def test_repr(off_root, cache_dir):
    ds = ModelNet(off_root, num_points=8, cache_dir=cache_dir)
    assert repr(ds) == "ModelNet(3, name=40, split=train, layout=off)"


# -- real data ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def modelnet40_train(shared_data, realdata_cache):
    root = shared_data / "ModelNet40"
    if not root.is_dir():
        pytest.skip("ModelNet40 not in the shared data")
    start = time.perf_counter()
    ds = ModelNet(root, layout="auto", cache_dir=realdata_cache, log=False)
    return ds, time.perf_counter() - start


@pytest.mark.realdata
def test_realdata_modelnet40_train(modelnet40_train, shared_data):
    ds, seconds = modelnet40_train
    assert ds.layout == "points"
    assert len(ds) == 9843 and ds.num_classes == 40 and len(ds.classes) == 40
    assert ds.skipped == []
    assert ds.classes == sorted(p.name for p in (shared_data / "ModelNet40").iterdir())
    counts = torch.bincount(ds.y, minlength=40)
    assert int(counts[ds.classes.index("airplane")]) == 626
    assert int(counts.min()) > 0
    d = ds[0]
    assert d.pos.shape == (1024, 3) and torch.isfinite(d.pos).all()
    assert float(d.pos.norm(dim=1).max()) <= 1.0 + 1e-4
    print(f"ModelNet40 train first processing: {seconds:.1f} s")


@pytest.mark.realdata
def test_realdata_modelnet40_cached_load_is_fast(modelnet40_train, realdata_cache):
    ds, _ = modelnet40_train
    start = time.perf_counter()
    again = ModelNet(ds.root, layout="auto", cache_dir=realdata_cache, log=False)
    seconds = time.perf_counter() - start
    assert len(again) == 9843
    torch.testing.assert_close(again[123].pos, ds[123].pos)
    assert seconds < 3.0, f"cached ModelNet40 load took {seconds:.2f} s"


@pytest.mark.realdata
def test_realdata_modelnet10_pcd_sample(shared_data, realdata_cache):
    root = shared_data / "ModelNet10_pcd_sample"
    if not root.is_dir():
        pytest.skip("ModelNet10_pcd_sample not in the shared data")
    raw = ModelNet(root, name="10", cache_dir=realdata_cache, log=False)
    assert len(raw) == 300 and raw.classes == sorted(MODELNET10_CLASSES)
    assert float(raw._data.pos.abs().max()) > 10  # stored unnormalised
    ds = ModelNet(
        root,
        name="10",
        pre_transform=NormalizeUnitSphere(),
        cache_dir=realdata_cache,
        log=False,
    )
    assert len(ds) == 300 and ds.num_classes == 10
    assert torch.bincount(ds.y).tolist() == [30] * 10
    pos = ds._data.pos
    assert torch.isfinite(pos).all()
    for d in ds[:20]:
        assert abs(float(d.pos.norm(dim=1).max()) - 1.0) < 1e-4
        assert float(d.pos.mean(0).abs().max()) < 1e-4
