import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import PointCutMix


def _batch(num=6, size=40):
    # cloud i: every point (i, point index, 0), normals the negated points
    clouds = []
    for i in range(num):
        pos = torch.stack(
            [
                torch.full((size,), float(i)),
                torch.arange(size, dtype=torch.float),
                torch.zeros(size),
            ],
            dim=1,
        )
        clouds.append(Data(pos=pos, normal=-pos, y=torch.tensor([i])))
    return Batch.from_data_list(clouds)


def test_each_cloud_takes_its_share_of_distinct_points_from_its_partner():
    torch.manual_seed(0)
    out = PointCutMix()(_batch())
    lam, partner = out.mix_lambda, out.mix_partner
    assert sorted(partner.tolist()) == list(range(6))  # a permutation
    assert torch.equal(lam, lam[:1].expand(6))  # one share for the batch
    k = round(float(lam[0]) * 40)
    pos = out.pos.view(6, 40, 3)
    torch.testing.assert_close(out.normal, -out.pos)  # attributes travel along
    for a in range(6):
        b = int(partner[a])
        from_b = pos[a][pos[a][:, 0] == b]
        if b != a:
            assert len(from_b) == k
            assert len(set(from_b[:, 1].tolist())) == k  # distinct points of b
        kept = pos[a][pos[a][:, 0] == a]
        assert len(set(kept[:, 1].tolist())) == len(kept)
        assert len(pos[a]) == 40
    assert out.y.tolist() == list(range(6))  # labels stay; the loss mixes them


def test_the_share_follows_beta():
    torch.manual_seed(0)
    shares = torch.tensor(
        [float(PointCutMix(beta=1.0)(_batch(2, 100)).mix_lambda[0]) for _ in range(400)]
    )
    assert abs(float(shares.mean()) - 0.5) < 0.05  # Beta(1, 1): uniform
    assert 0.2 < float((shares < 0.3).float().mean()) < 0.4  # spread, not fixed
    peaked = [
        float(PointCutMix(beta=50.0)(_batch(2, 100)).mix_lambda[0]) for _ in range(50)
    ]
    assert all(0.3 < s < 0.7 for s in peaked)


def test_probability_zero_leaves_the_batch_alone():
    batch = _batch()
    pos = batch.pos.clone()
    out = PointCutMix(prob=0.0)(batch)
    assert torch.equal(out.pos, pos) and "mix_lambda" not in out


def test_refuses_uneven_clouds_meshes_and_bad_arguments():
    uneven = Batch.from_data_list(
        [Data(pos=torch.randn(5, 3)), Data(pos=torch.randn(6, 3))]
    )
    with pytest.raises(ValueError, match="one size"):
        PointCutMix()(uneven)
    mesh = Data(pos=torch.randn(3, 3), face=torch.tensor([[0], [1], [2]]))
    with pytest.raises(ValueError, match="not meshes"):
        PointCutMix()(mesh)
    with pytest.raises(ValueError, match="prob"):
        PointCutMix(prob=1.5)
    with pytest.raises(ValueError, match="beta"):
        PointCutMix(beta=0.0)
    assert repr(PointCutMix(0.5, 2.0)) == "PointCutMix(prob=0.5, beta=2)"
    single = Data(pos=torch.randn(4, 3))
    assert "mix_lambda" not in PointCutMix()(single)  # nothing to mix with
