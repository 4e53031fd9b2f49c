import numpy as np
import pytest
import torch
from _train_fakes import Blobs
from torch_geometric.data import Batch, Data

from itnet_geo.train import (
    DataSpec,
    build_augment,
    build_split,
    build_train_val,
    carve_split,
    labels_of,
    shape_names,
    vote_augment,
)


def test_carve_split_is_per_class_seeded_and_disjoint():
    ds = Blobs(per_class=10, num_classes=3)
    train, val = carve_split(ds, 0.2, seed=0)
    assert len(train) + len(val) == 30
    assert torch.bincount(labels_of(val)).tolist() == [2, 2, 2]
    assert set(train.indices()).isdisjoint(val.indices())
    again = carve_split(ds, 0.2, seed=0)[1]
    assert list(again.indices()) == list(val.indices())
    other = carve_split(ds, 0.2, seed=1)[1]
    assert list(other.indices()) != list(val.indices())


def test_shape_names_follow_subsets():
    ds = Blobs(per_class=4, num_classes=2)
    train, val = carve_split(ds, 0.5, seed=0)
    assert shape_names(val) == [str(i) for i in val.indices()]  # unnamed shapes
    ds.names = [f"shape_{i}" for i in range(len(ds))]
    train, val = carve_split(ds, 0.5, seed=0)
    assert shape_names(val) == [f"shape_{i}" for i in val.indices()]
    part = val.index_select([2, 0])
    assert shape_names(part) == [shape_names(val)[2], shape_names(val)[0]]


def test_carve_split_keeps_tiny_classes_in_train():
    ds = Blobs(per_class=2, num_classes=3)
    train, val = carve_split(ds, 0.1, seed=0)
    assert torch.bincount(labels_of(val)).tolist() == [1, 1, 1]
    assert torch.bincount(labels_of(train)).tolist() == [1, 1, 1]
    single = Blobs(per_class=1, num_classes=2)
    assert len(carve_split(single, 0.5)[1]) == 0


def test_augment_names():
    aug = build_augment(
        ["cutmix:0.5:2", "rotate-z", "scale:0.8:1.25", "jitter:0.01", "dropout:0.5"]
    )
    assert [type(t).__name__ for t in aug.transforms] == [
        "PointCutMix",
        "RandomRotate",
        "RandomAnisotropicScale",
        "RandomJitter",
        "RandomPointDropout",
    ]
    assert (aug.transforms[0].prob, aug.transforms[0].beta) == (0.5, 2.0)
    assert vote_augment(["cutmix", "scale"]) == ("scale:0.8:1.25",)  # not at test
    assert build_augment([]) is None
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_augment(["flip"])
    with pytest.raises(ValueError, match="numbers"):
        build_augment(["scale:a"])
    assert vote_augment(["rotate-z", "scale", "jitter", "dropout"]) == (
        "rotate-z",
        "scale:0.8:1.25",
    )
    batch = Batch.from_data_list([Data(pos=torch.randn(16, 3)) for _ in range(3)])
    out = build_augment(["rotate-z", "scale"])(batch)
    assert out.pos.shape == (48, 3)


def test_spec_validation_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        DataSpec(kind="imagenet", root=".")
    with pytest.raises(ValueError, match="mesh"):
        DataSpec(kind="modelnet40", root=".", input="mesh")
    spec = DataSpec(kind="modelnet10", root=tmp_path, normals=True, cache_dir="/c")
    d = spec.to_dict()
    assert "cache_dir" not in d and d["root"] == str(tmp_path)
    assert DataSpec.from_dict(d, root="/elsewhere").root == "/elsewhere"
    assert spec.in_channels == 3
    batch = Data(pos=torch.zeros(2, 3), normal=torch.ones(2, 3))
    assert torch.equal(spec.prepare(batch).x, torch.ones(2, 3))


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_split(DataSpec(kind="modelnet40", root=tmp_path / "nope"), "train")


@pytest.mark.parametrize("progress", [True, False])
def test_build_split_progress_bar_follows_the_flag(tmp_path, capfd, progress):
    spec = DataSpec(
        kind="synthetic",
        root=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        num_points=32,
        synthetic_classes=2,
        synthetic_train=60,  # 120 files: above the progress-bar threshold
    )
    data = build_split(spec, "train", progress=progress)
    assert len(data) == 120
    err = capfd.readouterr().err
    assert ("file/s" in err or "files/s" in err or "it/s" in err) == progress


def test_train_points_resample_training_shapes_and_fix_validation(tmp_path):
    common = dict(
        kind="synthetic",
        root=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        synthetic_classes=2,
        synthetic_train=10,
        val_fraction=0.2,
    )
    train, val = build_train_val(DataSpec(num_points=32, train_points=64, **common))
    dense = build_split(DataSpec(num_points=64, **common), "train", progress=False)
    assert len(train) == 16 and len(val) == 4
    for part in (train, val):
        i = part.indices()[0]
        first, second = part[0].pos, part[0].pos
        assert first.shape == (32, 3)
        rows = {tuple(p) for p in dense[i].pos.tolist()}
        assert {tuple(p) for p in first.tolist()} <= rows  # points of the shape
        # training: another draw on every read; validation: one fixed draw
        assert torch.equal(first, second) == (part is val)
    # without it: the plain split, carved the same way
    plain, plain_val = build_train_val(DataSpec(num_points=32, **common), False)
    assert plain.transform is None and plain[0].pos.shape == (32, 3)
    assert list(plain_val.indices()) == list(val.indices())
    with pytest.raises(ValueError, match="must exceed num_points"):
        DataSpec(num_points=32, train_points=32, **common)
    with pytest.raises(ValueError, match="not meshes"):
        DataSpec(kind="shrec16", root=".", input="mesh", train_points=2048)


def test_train_points_refuses_clouds_stored_with_fewer_points(tmp_path):
    # Stored clouds of 48 points (one of 40): nothing to draw other 32 from.
    root = tmp_path / "ModelNet10"
    rng = np.random.default_rng(0)
    for c in ("chair", "desk"):
        for i in range(1, 4):
            n = 40 if (c, i) == ("desk", 2) else 48
            path = root / c / "train" / f"{c}_{i:04d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, rng.standard_normal((n, 3)).astype(np.float32))
    spec = dict(kind="modelnet10", root=root, cache_dir=tmp_path / "cache")
    train, _ = build_train_val(DataSpec(num_points=32, train_points=40, **spec), False)
    assert train[0].pos.shape == (32, 3)
    message = r"train_points=48: 1 of 6 .*desk/train/desk_0002.npy, has 40.* 48\)"
    with pytest.raises(ValueError, match=message):
        build_train_val(DataSpec(num_points=32, train_points=48, **spec), False)


def test_hks_eigs_reach_the_mesh_features_and_key_the_cache(tmp_path):
    import trimesh

    for name, radius in (("ball", 1.0), ("egg", 2.0)):
        mesh = trimesh.creation.icosphere(subdivisions=1, radius=radius)  # 42 vertices
        mesh.vertices[:, 2] *= 1.0 if name == "ball" else 1.7
        (tmp_path / "data" / name / "train").mkdir(parents=True)
        mesh.export(tmp_path / "data" / name / "train" / "m.obj")

    def features(eigs):
        spec = DataSpec(
            kind="folder",
            root=tmp_path / "data",
            input="mesh",
            hks=4,
            hks_eigs=eigs,
            cache_dir=tmp_path / "cache",
        )
        return torch.cat([d.x for d in build_split(spec, "train", progress=False)])

    few, all_, more = features(6), features(42), features(1000)
    assert few.shape == (84, 4)
    assert not torch.allclose(few, all_)  # a truncated spectrum, other features
    torch.testing.assert_close(all_, more)  # at most the vertex count are used
    with pytest.raises(ValueError, match="hks_eigs must be positive"):
        DataSpec(kind="shrec16", root=".", input="mesh", hks_eigs=0)
