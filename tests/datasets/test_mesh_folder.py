import numpy as np
import pytest
import torch
from shape_files import (
    CUBE_F,
    CUBE_V,
    TETRA_F,
    TETRA_V,
    write_obj,
    write_off,
    write_ply,
)

from itnet_geo.datasets import MeshFolder
from itnet_geo.io import ReadError
from itnet_geo.transforms import MeshToGraph


@pytest.fixture
def mesh_root(tmp_path):
    root = tmp_path / "shrec"
    write_obj(root / "ants" / "train" / "T1.obj", CUBE_V, CUBE_F)
    write_off(root / "ants" / "train" / "T2.off", TETRA_V, TETRA_F)
    write_ply(root / "bird" / "train" / "T3.ply", TETRA_V * 2, TETRA_F)
    write_obj(root / "bird" / "test" / "T4.obj", CUBE_V, CUBE_F)
    return root


def test_mesh_folder_reads_meshes(mesh_root, cache_dir):
    ds = MeshFolder(mesh_root, cache_dir=cache_dir)
    assert ds.classes == ["ants", "bird"] and ds.num_classes == 2 and len(ds) == 3
    cube = ds[0]
    assert cube.face.shape == (3, 12) and cube.face.dtype == torch.long
    assert cube.pos.shape == (8, 3) and cube.pos.dtype == torch.float32
    torch.testing.assert_close(cube.pos, torch.from_numpy(CUBE_V).float())
    assert cube.face.t().tolist() == CUBE_F.tolist()
    assert [int(d.y) for d in ds] == [0, 0, 1]
    assert ds[2].pos.max() == 2.0
    assert repr(ds) == "MeshFolder(3, split=train)"


def test_mesh_folder_batches_offset_faces(mesh_root, cache_dir):
    from torch_geometric.loader import DataLoader

    ds = MeshFolder(mesh_root, cache_dir=cache_dir)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch.face.size(0) == 3 and int(batch.face.max()) == batch.num_nodes - 1


def test_mesh_folder_test_split_and_one_split_root(mesh_root, cache_dir):
    test = MeshFolder(mesh_root, split="test", cache_dir=cache_dir)
    assert len(test) == 1 and int(test[0].y) == 1 and test.classes == ["ants", "bird"]
    for path in (mesh_root / "bird" / "test").iterdir():
        path.unlink()
    (mesh_root / "bird" / "test").rmdir()
    with pytest.raises(FileNotFoundError, match="'test' split"):
        MeshFolder(mesh_root, split="test", cache_dir=cache_dir)


def test_mesh_folder_pre_transform_cached(mesh_root, cache_dir):
    ds = MeshFolder(mesh_root, pre_transform=MeshToGraph(), cache_dir=cache_dir)
    assert ds[0].edge_index.size(1) == 36  # 18 cube edges, both directions
    torch.testing.assert_close(ds[0].weight.sum(), torch.tensor(6.0))
    plain = MeshFolder(mesh_root, cache_dir=cache_dir)
    assert plain.cache_path != ds.cache_path and "edge_index" not in plain[0]


def test_mesh_folder_errors(mesh_root, cache_dir):
    points_only = mesh_root / "ants" / "train" / "T8.ply"
    write_ply(points_only, np.random.default_rng(0).normal(size=(5, 3)))
    broken = mesh_root / "bird" / "train" / "T9.obj"
    broken.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(ReadError) as info:
        MeshFolder(mesh_root, cache_dir=cache_dir)
    assert info.value.path == str(points_only) and "no faces" in str(info.value)
    with pytest.warns(UserWarning, match="skipped 2 of 5") as record:
        ds = MeshFolder(mesh_root, on_error="skip", cache_dir=cache_dir)
    assert len(record) == 1
    assert len(ds) == 3
    assert [p for p, _ in ds.skipped] == [str(points_only), str(broken)]


def test_mesh_folder_extensions(mesh_root, cache_dir):
    ds = MeshFolder(mesh_root, extensions=(".OBJ",), cache_dir=cache_dir)
    assert len(ds) == 1


@pytest.mark.realdata
def test_realdata_shrec16_train(shared_data, realdata_cache):
    root = shared_data / "shrec_16"
    if not root.is_dir():
        pytest.skip("shrec_16 not in the shared data")
    ds = MeshFolder(root, split="train", cache_dir=realdata_cache, log=False)
    assert len(ds) == 480 and ds.num_classes == 30
    assert torch.bincount(ds.y).tolist() == [16] * 30
    assert ds.skipped == []
    for d in ds[::60]:
        assert d.face.size(0) == 3 and int(d.face.max()) < d.num_nodes
        assert torch.isfinite(d.pos).all() and 200 <= d.num_nodes <= 300
