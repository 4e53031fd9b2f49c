import random

import numpy as np
import pytest
import torch

import itnet_geo
from itnet_geo.train import (
    CheckpointError,
    load_checkpoint,
    model_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from itnet_geo.train.checkpoint import FORMAT, some_names


def _payload():
    return {
        "model": {"name": "tiny", "kwargs": {"num_classes": 3, "sizes": (1, 2)}},
        "state_dict": {"w": torch.arange(4.0)},
        "classes": ["a", "b", "c"],
        "metrics": {"acc": 0.5, "n": 3, "note": None, "ok": True},
    }


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "sub" / "best.pt", _payload())
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT
    assert raw["version"] == itnet_geo.__version__
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(4.0))
    assert ckpt["model"]["kwargs"]["sizes"] == (1, 2)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["best.pt"]


@pytest.mark.parametrize(
    "bad", [np.float64(1.0), np.arange(3), torch.__version__, {1.5: "x"}, object()]
)
def test_refuses_what_weights_only_cannot_load(tmp_path, bad):
    payload = dict(_payload(), extra=bad)
    with pytest.raises(TypeError, match="checkpoint"):
        save_checkpoint(tmp_path / "x.pt", payload)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", _payload())
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, dict(_payload(), epoch=2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    good = save_checkpoint(tmp_path / "good.pt", _payload())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not an itnet_geo checkpoint"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, dict(_payload(), format_version=99))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(newer)


def test_rng_state_round_trip_restores_every_stream(tmp_path):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = rng_state(gen)
    path = save_checkpoint(tmp_path / "rng.pt", dict(_payload(), rng=[state]))
    first = (
        torch.rand(3),
        np.random.rand(3),
        random.random(),
        torch.rand(2, generator=gen),
    )
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gen.manual_seed(99)
    set_rng_state(load_checkpoint(path)["rng"][0], gen)
    again = (
        torch.rand(3),
        np.random.rand(3),
        random.random(),
        torch.rand(2, generator=gen),
    )
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert torch.equal(first[3], again[3])


def test_model_config_needs_name_and_config():
    with pytest.raises(TypeError, match="name"):
        model_config(torch.nn.Linear(2, 2))


def test_some_names_shows_ten_and_counts_the_rest():
    names = [f"c{i}" for i in range(40)]
    assert some_names(names[:3]) == "c0, c1, c2"
    assert some_names(names[:10]) == ", ".join(names[:10])
    assert some_names(names) == ", ".join(names[:10]) + ", ... (40 in all)"
    assert some_names(names, shown=2) == "c0, c1, ... (40 in all)"
