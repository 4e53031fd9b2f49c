"""The processed-data cache shared by every dataset (``itnet_geo.datasets._cache``)."""

import json
import os
import warnings

import pytest
import torch
from shape_files import cloud, write_npy

import itnet_geo.datasets.modelnet as modelnet_module
from itnet_geo.datasets import ModelNet, _cache, default_cache_dir
from itnet_geo.io import ReadError
from itnet_geo.transforms import NormalizeUnitSphere, RandomJitter


@pytest.fixture
def count_reads(monkeypatch):
    """Count the files ModelNet reads (0 means the cache answered)."""
    calls = []
    original = modelnet_module.read

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(modelnet_module, "read", counting)
    return calls


def _load(root, cache_dir, **kwargs):
    return ModelNet(root, num_points=64, cache_dir=cache_dir, **kwargs)


def test_second_load_uses_cache(npy_root, cache_dir, count_reads):
    first = _load(npy_root, cache_dir)
    assert len(count_reads) == 5
    second = _load(npy_root, cache_dir)
    assert len(count_reads) == 5  # nothing read again
    assert second.cache_path == first.cache_path
    assert (first.cache_path / "data.pt").is_file()
    manifest = json.loads((first.cache_path / "manifest.json").read_text())
    assert manifest["num_shapes"] == 5 and manifest["classes"] == ["a", "b"]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a.pos, b.pos)
        assert a.y == b.y
    assert second.classes == ["a", "b"]


def test_cache_lives_outside_root(npy_root, cache_dir):
    before = sorted(p for p in npy_root.rglob("*"))
    ds = _load(npy_root, cache_dir)
    assert sorted(p for p in npy_root.rglob("*")) == before
    assert cache_dir in ds.cache_path.parents
    assert ds.processed_dir == str(ds.cache_path) and ds.raw_dir == str(npy_root)


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip", "delete_data", "delete_manifest", "garbage_manifest"],
)
def test_damaged_cache_is_rebuilt(npy_root, cache_dir, count_reads, damage):
    first = _load(npy_root, cache_dir)
    expected = [d.pos.clone() for d in first]
    data, manifest = first.cache_path / "data.pt", first.cache_path / "manifest.json"
    payload = data.read_bytes()
    if damage == "truncate":
        data.write_bytes(payload[: len(payload) // 2])
    elif damage == "flip":  # same size, one byte changed
        middle = len(payload) // 2
        data.write_bytes(
            payload[:middle] + bytes([payload[middle] ^ 1]) + payload[middle + 1 :]
        )
    elif damage == "delete_data":
        data.unlink()
    elif damage == "delete_manifest":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    reads = len(count_reads)
    again = _load(npy_root, cache_dir)
    assert len(count_reads) == reads + 5  # processed again, not read from the cache
    assert [torch.equal(d.pos, e) for d, e in zip(again, expected, strict=True)] == [
        True
    ] * 5
    # and the rebuilt entry is valid: a third load reads nothing
    _load(npy_root, cache_dir)
    assert len(count_reads) == reads + 5


def test_interrupted_write_leaves_no_entry(npy_root, cache_dir, monkeypatch):
    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(_cache.torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        _load(npy_root, cache_dir)
    monkeypatch.undo()
    folders = list((cache_dir / "ModelNet").iterdir())
    assert len(folders) == 1 and list(folders[0].iterdir()) == []  # no tmp, no entry
    assert len(_load(npy_root, cache_dir)) == 5


@pytest.mark.parametrize(
    "change",
    [
        {"num_points": 32},
        {"seed": 3},
        {"pre_transform": NormalizeUnitSphere()},
        {"include_normals": False},
        {"split": "test"},
    ],
)
def test_changed_option_changes_key(tmp_path, npy_root, cache_dir, change):
    write_npy(npy_root / "a" / "test" / "a_0100.npy", cloud(5, 10))
    base = _load(npy_root, cache_dir)
    options = {"num_points": 64, **change}
    other = ModelNet(npy_root, cache_dir=cache_dir, **options)
    assert other.cache_path != base.cache_path
    assert (base.cache_path / "manifest.json").is_file()
    assert (other.cache_path / "manifest.json").is_file()


def test_changed_pre_transform_parameters_change_key(npy_root, cache_dir):
    a = _load(npy_root, cache_dir, pre_transform=RandomJitter(0.01))
    b = _load(npy_root, cache_dir, pre_transform=RandomJitter(0.02))
    assert a.cache_path != b.cache_path


def test_transform_is_not_part_of_the_key(npy_root, cache_dir):
    a = _load(npy_root, cache_dir)
    b = _load(npy_root, cache_dir, transform=NormalizeUnitSphere())
    assert a.cache_path == b.cache_path
    assert abs(float(b[0].pos.norm(dim=1).max()) - 1) < 1e-5


def test_changed_source_files_rebuild(npy_root, cache_dir, count_reads):
    _load(npy_root, cache_dir)
    write_npy(npy_root / "a" / "train" / "a_0000.npy", cloud(99, 100))
    reads = len(count_reads)
    ds = _load(npy_root, cache_dir)
    assert len(count_reads) == reads + 5
    original = torch.from_numpy(cloud(99, 100))
    assert (ds[0].pos[:, None] == original[None]).all(-1).any(1).all()
    write_npy(npy_root / "b" / "train" / "b_0009.npy", cloud(7, 10))  # a new file
    assert len(_load(npy_root, cache_dir)) == 6


def test_default_cache_dir_from_environment(npy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ITNET_GEO_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    ds = ModelNet(npy_root, num_points=16)
    assert (tmp_path / "env-cache") in ds.cache_path.parents
    monkeypatch.delenv("ITNET_GEO_CACHE")
    assert default_cache_dir() == default_cache_dir().home() / ".cache" / "itnet_geo"


def test_skipped_files_are_cached_and_rewarned(npy_root, cache_dir, count_reads):
    bad = npy_root / "b" / "train" / "b_0005.npy"
    bad.write_bytes(b"\x93NUMPY broken")
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        first = _load(npy_root, cache_dir, on_error="skip")
    reads = len(count_reads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = _load(npy_root, cache_dir, on_error="skip")
    assert len(count_reads) == reads  # from the cache
    assert [str(w.message).count(str(bad)) for w in caught] == [1]
    assert second.skipped == first.skipped and second.skipped[0][0] == str(bad)
    # a cached entry with skipped files never hides them from on_error="raise"
    with pytest.raises(ReadError) as info:
        _load(npy_root, cache_dir, on_error="raise")
    assert info.value.path == str(bad)


def test_force_reload(npy_root, cache_dir, count_reads):
    _load(npy_root, cache_dir)
    _load(npy_root, cache_dir, force_reload=True)
    assert len(count_reads) == 10


def test_fingerprint_notices_missing_files(tmp_path):
    a = tmp_path / "a.npy"
    write_npy(a, cloud(0, 4))
    before = _cache.fingerprint(tmp_path, [a])
    os.utime(a, ns=(1, 1))
    touched = _cache.fingerprint(tmp_path, [a])
    a.unlink()
    assert len({before, touched, _cache.fingerprint(tmp_path, [a])}) == 3


def _only_class_a(data):
    return int(data.y) == 0


def test_pre_filter_applies_and_is_keyed_by_name(npy_root, cache_dir):
    a = _load(npy_root, cache_dir, pre_filter=_only_class_a)
    assert len(a) == 3 and a.num_classes == 2
    b = _load(npy_root, cache_dir, pre_filter=_only_class_a)
    assert b.cache_path == a.cache_path  # a module-level function has a stable name
    c = _load(npy_root, cache_dir, pre_filter=lambda d: int(d.y) == 0)
    assert c.cache_path != a.cache_path  # a lambda never shares an entry
    with pytest.raises(ValueError, match="pre_filter"):
        _load(npy_root, cache_dir, pre_filter=lambda d: False)
