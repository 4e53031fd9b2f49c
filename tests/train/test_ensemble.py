"""Ensembles: the mean of the members' class probabilities, in one class order."""

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from itnet_geo.nn.models import ITNetClassifier
from itnet_geo.train import (
    CheckpointError,
    Ensemble,
    ensemble_from_checkpoints,
    load_checkpoint,
    model_config,
    model_from_checkpoint,
    pack_ensemble,
    save_checkpoint,
)
from itnet_geo.train.checkpoint import build_model


class _Fixed(nn.Module):
    """Returns the same logits for every batch."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float64))

    def forward(self, data):
        return self.logits


def test_output_is_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    a, b, c = (torch.randn(5, 4, dtype=torch.float64) * 3 for _ in range(3))
    out = Ensemble([_Fixed(a), _Fixed(b), _Fixed(c)])(None)
    mean = (a.softmax(-1) + b.softmax(-1) + c.softmax(-1)) / 3
    torch.testing.assert_close(out.exp(), mean.float())
    # its cross-entropy is the ensemble's negative log-likelihood
    y = torch.tensor([0, 1, 2, 3, 0])
    nll = -mean[torch.arange(5), y].log().mean()
    assert nn.functional.cross_entropy(out, y).item() == pytest.approx(nll.item())


def test_one_member_keeps_its_predictions_and_probabilities():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    out = Ensemble([_Fixed(logits)])(None)
    torch.testing.assert_close(out, logits.log_softmax(-1))
    assert torch.equal(out.argmax(-1), logits.argmax(-1))


def test_class_maps_put_members_in_one_order():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    # the second member lists the classes as (c, a, b)
    permuted = logits[:, [2, 0, 1]]
    maps = [torch.arange(3), torch.tensor([1, 2, 0])]
    out = Ensemble([_Fixed(logits), _Fixed(permuted)], maps)(None)
    torch.testing.assert_close(out, logits.log_softmax(-1))
    with pytest.raises(ValueError, match="2 class maps for 1 members"):
        Ensemble([_Fixed(logits)], maps)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])


def _checkpoint(model, classes, **data):
    return {
        "model": model_config(model),
        "state_dict": model.state_dict(),
        "classes": classes,
        "data": {"kind": "synthetic", "root": "r", "num_points": 64, **data},
    }


def _permuted_copy(ckpt, order):
    """The same network with its classes (and output rows) listed in ``order``."""
    state = dict(ckpt["state_dict"])
    last = [k for k, v in state.items() if v.dim() == 2 and v.size(0) == len(order)][-1]
    bias = last[: -len("weight")] + "bias"
    state[last], state[bias] = state[last][order], state[bias][order]
    return {**ckpt, "state_dict": state, "classes": [ckpt["classes"][i] for i in order]}


def test_members_from_checkpoints_are_matched_by_class_name():
    torch.manual_seed(0)
    model = ITNetClassifier.from_preset("smoke", num_classes=3).eval()
    first = _checkpoint(model, ["a", "b", "c"])
    second = _permuted_copy(first, [2, 0, 1])
    assert second["classes"] == ["c", "a", "b"]
    data = Batch.from_data_list([Data(pos=torch.randn(64, 3)) for _ in range(2)])
    ens = ensemble_from_checkpoints([first, second], ["1.pt", "2.pt"])
    assert not ens.training
    with torch.no_grad():
        expected = model(data).log_softmax(-1)
        torch.testing.assert_close(ens(data), expected, atol=1e-5, rtol=1e-5)


def test_members_must_know_the_same_classes_and_read_data_alike():
    model = ITNetClassifier.from_preset("smoke", num_classes=3)
    first = _checkpoint(model, ["a", "b", "c"])
    other = _checkpoint(model, ["a", "b", "d"])
    with pytest.raises(
        CheckpointError,
        match=r"2\.pt was trained on other classes "
        r"than 1\.pt: it adds d: it lacks c",
    ):
        ensemble_from_checkpoints([first, other], ["1.pt", "2.pt"])
    denser = _checkpoint(model, ["a", "b", "c"], num_points=128)
    with pytest.raises(
        CheckpointError,
        match=r"2\.pt reads its data differently from 1\.pt: "
        r"num_points is 128 there and 64 in 1\.pt",
    ):
        ensemble_from_checkpoints([first, denser], ["1.pt", "2.pt"])
    # an option a checkpoint predates counts as its default
    assert "hks_eigs" not in first["data"]
    recent = {**first, "data": {**first["data"], "hks_eigs": 64}}
    assert len(ensemble_from_checkpoints([first, recent], ["1", "2"]).members) == 2
    # where the data was read from does not matter
    moved = {**first, "data": {**first["data"], "root": "elsewhere"}}
    assert len(ensemble_from_checkpoints([first, moved], ["1", "2"]).members) == 2


def test_an_ensemble_of_models_is_a_model_build_model_rebuilds():
    torch.manual_seed(0)
    a = ITNetClassifier.from_preset("smoke", num_classes=3).eval()
    b = ITNetClassifier.from_preset("smoke", num_classes=3).eval()
    ens = Ensemble([a, b], [torch.arange(3), torch.tensor([2, 0, 1])]).eval()
    config = model_config(ens)
    assert config["name"] == "ensemble"
    assert config["kwargs"]["class_maps"] == [[0, 1, 2], [2, 0, 1]]
    copy = build_model(config)
    copy.load_state_dict(ens.state_dict())
    copy.eval()
    data = Batch.from_data_list([Data(pos=torch.randn(64, 3)) for _ in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(copy(data), ens(data))
    # members without a name and a config cannot be checkpointed
    with pytest.raises(TypeError, match="needs a str 'name' and a dict 'config'"):
        model_config(Ensemble([_Fixed(torch.zeros(1, 3))]))


def test_pack_ensemble_writes_what_eval_of_the_files_scores(tmp_path):
    torch.manual_seed(0)
    model = ITNetClassifier.from_preset("smoke", num_classes=3).eval()
    first = _checkpoint(model, ["a", "b", "c"])
    first.update(kind="best", epoch=7, best={"epoch": 7, "accuracy": 0.5})
    other = ITNetClassifier.from_preset("smoke", num_classes=3).eval()
    second = _permuted_copy(_checkpoint(other, ["a", "b", "c"]), [2, 0, 1])
    paths = [tmp_path / "1.pt", tmp_path / "2.pt"]
    for path, ckpt in zip(paths, (first, second), strict=True):
        save_checkpoint(path, ckpt)
    written = pack_ensemble(paths, tmp_path / "ens.pt")
    packed = load_checkpoint(tmp_path / "ens.pt")
    assert packed["kind"] == "ensemble" and packed["classes"] == ["a", "b", "c"]
    assert packed["ensemble"]["files"] == ["1.pt", "2.pt"]
    assert packed["ensemble"]["members"][0]["best"]["epoch"] == 7
    assert "best" not in packed and "epoch" not in packed
    assert packed["data"] == first["data"]
    assert written["ensemble"]["parameters"] == 2 * sum(
        p.numel() for p in model.parameters()
    )
    data = Batch.from_data_list([Data(pos=torch.randn(64, 3)) for _ in range(3)])
    loaded = [load_checkpoint(p) for p in paths]
    with torch.no_grad():
        expected = ensemble_from_checkpoints(loaded, paths)(data)
        torch.testing.assert_close(model_from_checkpoint(packed)(data), expected)
    # a packed ensemble is a member like any other
    again = pack_ensemble([tmp_path / "ens.pt", paths[0]], tmp_path / "ens2.pt")
    assert again["ensemble"]["files"] == ["ens.pt", "1.pt"]
    assert len(model_from_checkpoint(again).members) == 2
    # members that disagree are refused before anything is written
    save_checkpoint(tmp_path / "3.pt", _checkpoint(model, ["a", "b", "d"]))
    with pytest.raises(CheckpointError, match="trained on other classes"):
        pack_ensemble([paths[0], tmp_path / "3.pt"], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
