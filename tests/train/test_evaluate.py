import csv

import pytest
import torch
from _train_fakes import Blobs
from torch import nn
from torch_geometric.loader import DataLoader

from itnet_geo.train import (
    confusion_matrix,
    evaluate,
    plot_confusion,
    plot_curves,
    write_predictions,
)


class Oracle(nn.Module):
    """Predicts class c where the shape's axis scale is largest (Blobs' rule)."""

    def forward(self, data):
        from torch_geometric.nn import global_mean_pool

        spread = global_mean_pool(data.pos.abs(), data.batch)
        return torch.log_softmax(10 * spread, dim=-1)


class Shift(nn.Module):
    """Counts its calls; used as a vote transform."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, data):
        self.calls += 1
        return data


def test_evaluate_counts_and_votes():
    ds = Blobs(per_class=6, num_points=64)
    loader = DataLoader(ds, batch_size=5)
    res = evaluate(Oracle(), loader, 3)
    assert res.n == 18
    assert res.accuracy == pytest.approx(1.0)
    assert res.confusion.diagonal().tolist() == [6, 6, 6]
    vote = Shift()
    voted = evaluate(Oracle(), loader, 3, votes=3, vote_transform=vote)
    assert vote.calls == 2 * len(loader)
    assert voted.accuracy == res.accuracy
    assert voted.loss == pytest.approx(res.loss)
    with pytest.raises(ValueError, match="vote_transform"):
        evaluate(Oracle(), loader, 3, votes=2)


def test_per_shape_predictions_and_their_table(tmp_path):
    ds = Blobs(per_class=4, num_points=64)
    perm = torch.tensor([1, 2, 0])
    res = evaluate(Oracle(), DataLoader(ds, batch_size=5), 3, label_map=perm)
    labels = torch.cat([d.y for d in ds])
    assert torch.equal(res.targets, perm[labels])  # loader order, mapped labels
    assert torch.equal(res.predictions, labels)  # the oracle predicts the blob
    assert bool(((res.confidence > 1 / 3) & (res.confidence <= 1)).all())
    recount = confusion_matrix(res.predictions, res.targets, 3)
    assert torch.equal(recount, res.confusion)
    names = [f"blob_{i}" for i in range(len(ds))]
    path = tmp_path / "pred.csv"
    misses = write_predictions(
        path, names, ["a", "b", "c"], res.targets, res.predictions, res.confidence
    )
    assert misses == 12
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["name"] for row in rows] == names
    assert rows[0]["label"] == "abc"[int(perm[labels[0]])]
    assert rows[0]["prediction"] == "abc"[int(labels[0])]
    assert {row["correct"] for row in rows} == {"0"}
    assert [p.name for p in tmp_path.iterdir()] == ["pred.csv"]
    lines = path.read_bytes().split(b"\n")
    assert b"\r" not in path.read_bytes() and lines[1].endswith(b",0")  # grep ',0$'
    with pytest.raises(ValueError, match="3 names for 12 targets"):
        write_predictions(
            path, names[:3], "abc", res.targets, res.predictions, res.confidence
        )


def test_label_map_and_prepare():
    ds = Blobs(per_class=4, num_points=64)
    loader = DataLoader(ds, batch_size=4)
    # the dataset's class i is the model's class perm[i]: all predictions "wrong"
    perm = torch.tensor([1, 2, 0])
    res = evaluate(Oracle(), loader, 3, label_map=perm)
    assert res.accuracy == 0.0
    assert res.confusion[1, 0] == 4  # true (model) class 1 = dataset class 0

    def scale_x(batch):
        batch.pos = batch.pos * torch.tensor([100.0, 1.0, 1.0])
        return batch

    res = evaluate(Oracle(), loader, 3, prepare=scale_x)
    assert res.confusion[:, 0].sum() == 12  # everything looks like class 0


def test_eval_mode_is_restored():
    model = nn.Sequential(Oracle())
    model.train()
    evaluate(model, DataLoader(Blobs(per_class=1), batch_size=3), 3)
    assert model.training


def test_plots(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": None, "train_acc": 0.5, "lr": 0.1},
        {"epoch": 2, "train_loss": 0.5, "val_loss": 0.7, "val_acc": 0.6, "lr": 0.05},
    ]
    path = plot_curves(history, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    cm = torch.tensor([[3, 1], [0, 2]])
    path = plot_confusion(cm, ["a", "b"], tmp_path / "sub" / "cm.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="classes"):
        plot_confusion(cm, ["a", "b", "c"], tmp_path / "bad.png")
