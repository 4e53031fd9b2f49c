import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import SubsamplePoints


def _shape(n=100, label=4):
    pos = torch.arange(3.0 * n).view(n, 3)
    return Data(pos=pos, normal=-pos, x=pos[:, :1], y=torch.tensor([label]))


def test_keeps_num_rows_together_in_stored_order():
    torch.manual_seed(0)
    out = SubsamplePoints(30)(_shape())
    assert out.num_nodes == 30 and out.y.tolist() == [4]
    torch.testing.assert_close(out.normal, -out.pos)
    torch.testing.assert_close(out.x, out.pos[:, :1])
    kept = (out.pos[:, 0] / 3).long()
    assert bool((kept.diff() > 0).all())  # distinct points, in order


def test_unseeded_draws_differ_seeded_draws_repeat():
    torch.manual_seed(0)
    first, second = (SubsamplePoints(30)(_shape()).pos for _ in range(2))
    assert not torch.equal(first, second)
    seeded = [SubsamplePoints(30, seed=5)(_shape()).pos for _ in range(2)]
    assert torch.equal(*seeded)
    assert not torch.equal(seeded[0], SubsamplePoints(30, seed=6)(_shape()).pos)


def test_draws_are_uniform_over_the_points():
    # each of 20 points is kept with probability 5 / 20 = 0.25
    torch.manual_seed(0)
    hits = torch.zeros(20)
    for _ in range(4000):
        kept = (SubsamplePoints(5)(_shape(20)).pos[:, 0] / 3).long()
        hits[kept] += 1
    assert float((hits / 4000 - 0.25).abs().max()) < 0.03


def test_small_shapes_are_left_whole():
    data = _shape(10)
    assert SubsamplePoints(10)(data).num_nodes == 10
    assert SubsamplePoints(64)(data).num_nodes == 10


def test_on_a_batch_each_graph_draws_its_own_subset():
    torch.manual_seed(0)
    batch = Batch.from_data_list([_shape(40, 0), _shape(12, 1), _shape(40, 2)])
    out = SubsamplePoints(16)(batch)
    counts = torch.bincount(out.batch, minlength=3)
    assert counts.tolist() == [16, 12, 16]
    assert out.ptr.tolist() == [0, 16, 28, 44]
    assert out.y.tolist() == [0, 1, 2]
    first, third = out.pos[:16], out.pos[28:]
    assert not torch.equal(first, third)  # not one choice for all graphs


def test_refuses_meshes_and_bad_num():
    mesh = Data(pos=torch.randn(3, 3), face=torch.tensor([[0], [1], [2]]))
    with pytest.raises(ValueError, match="face"):
        SubsamplePoints(2)(mesh)
    with pytest.raises(ValueError, match="positive"):
        SubsamplePoints(0)
    assert repr(SubsamplePoints(8, seed=1)) == "SubsamplePoints(8, seed=1)"
