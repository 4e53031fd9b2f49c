import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import RandomRotate


def _cloud(seed, n=50):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g)
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    return Data(pos=pos, normal=normal, y=torch.tensor([1]))


@pytest.mark.parametrize("axis", ["x", "y", "z", "so3"])
def test_rotation_preserves_norms_and_angles(axis):
    torch.manual_seed(0)
    data = _cloud(0)
    out = RandomRotate(axis)(data)
    torch.testing.assert_close(out.pos.norm(dim=1), data.pos.norm(dim=1))
    torch.testing.assert_close(out.normal.norm(dim=1), torch.ones(50))
    # one rotation for points and normals: their inner products are kept
    torch.testing.assert_close(
        (out.pos * out.normal).sum(1), (data.pos * data.normal).sum(1)
    )

    def distances(p):
        return (p[:, None] - p[None]).norm(dim=-1)

    torch.testing.assert_close(distances(out.pos), distances(data.pos))
    assert not torch.allclose(out.pos, data.pos)
    assert out.y.tolist() == [1]


def test_single_axis_keeps_that_coordinate():
    torch.manual_seed(0)
    data = _cloud(1)
    out = RandomRotate("z")(data)
    torch.testing.assert_close(out.pos[:, 2], data.pos[:, 2])


def test_so3_is_a_proper_rotation():
    torch.manual_seed(0)
    basis = RandomRotate("so3")(Data(pos=torch.eye(3))).pos  # rows: R e_i
    torch.testing.assert_close(basis @ basis.T, torch.eye(3), atol=1e-6, rtol=0)
    assert abs(float(torch.linalg.det(basis)) - 1) < 1e-5


def test_max_degrees_bounds_the_angle():
    torch.manual_seed(0)
    for _ in range(20):
        out = RandomRotate("z", max_degrees=10)(Data(pos=torch.tensor([[1.0, 0, 0]])))
        angle = torch.atan2(out.pos[0, 1], out.pos[0, 0]).rad2deg().abs()
        assert float(angle) <= 10 + 1e-4


def test_batch_gets_one_rotation_per_graph():
    torch.manual_seed(0)
    same = _cloud(2, 10)
    batch = Batch.from_data_list([same, same])
    out = RandomRotate("so3")(batch)
    torch.testing.assert_close(out.pos[:10].norm(dim=1), same.pos.norm(dim=1))
    assert not torch.allclose(out.pos[:10], out.pos[10:])


def test_repr_and_errors():
    assert repr(RandomRotate()) == "RandomRotate(axis='z', max_degrees=180.0)"
    with pytest.raises(ValueError, match="axis"):
        RandomRotate("w")
