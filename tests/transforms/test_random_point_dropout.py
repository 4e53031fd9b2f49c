import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import RandomPointDropout


def test_dropout_keeps_rows_together():
    torch.manual_seed(0)
    pos = torch.arange(300.0).view(100, 3)
    data = Data(pos=pos, normal=-pos, x=pos[:, :1], y=torch.tensor([4]))
    out = RandomPointDropout(0.9)(data)
    assert 1 <= out.num_nodes < 100
    torch.testing.assert_close(out.normal, -out.pos)
    torch.testing.assert_close(out.x, out.pos[:, :1])
    kept = (out.pos[:, 0] / 3).long()
    assert bool((kept.diff() > 0).all())  # a subset, in order
    assert out.y.tolist() == [4]


def test_dropout_ratio_zero_keeps_all_and_extremes_keep_one():
    data = Data(pos=torch.randn(50, 3))
    assert RandomPointDropout(0.0)(data).num_nodes == 50
    torch.manual_seed(0)
    for _ in range(20):
        assert RandomPointDropout(0.999)(Data(pos=torch.randn(1, 3))).num_nodes == 1


def test_dropout_restricts_edges():
    torch.manual_seed(3)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    out = RandomPointDropout(0.9)(Data(pos=torch.randn(4, 3), edge_index=edge_index))
    if out.edge_index.numel():
        assert int(out.edge_index.max()) < out.num_nodes


def test_dropout_on_a_batch():
    torch.manual_seed(0)
    batch = Batch.from_data_list([Data(pos=torch.randn(40, 3)) for _ in range(3)])
    out = RandomPointDropout(0.8)(batch)
    counts = torch.bincount(out.batch, minlength=3)
    assert bool((counts >= 1).all()) and int(counts.sum()) == out.num_nodes
    assert out.ptr.tolist() == [0, *torch.cumsum(counts, 0).tolist()]


def test_dropout_refuses_meshes_and_repr():
    with pytest.raises(ValueError, match="face"):
        RandomPointDropout()(
            Data(pos=torch.randn(3, 3), face=torch.tensor([[0], [1], [2]]))
        )
    assert repr(RandomPointDropout(0.5)) == "RandomPointDropout(max_ratio=0.5)"
    with pytest.raises(ValueError):
        RandomPointDropout(1.0)
