import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import RandomAnisotropicScale


def test_factors_in_range_per_axis():
    torch.manual_seed(0)
    for _ in range(10):
        out = RandomAnisotropicScale(0.5, 2.0)(Data(pos=torch.ones(4, 3)))
        factors = out.pos[0]
        assert bool(((factors >= 0.5) & (factors <= 2.0)).all())
        torch.testing.assert_close(out.pos, factors.expand(4, 3))


def test_normals_stay_perpendicular_to_the_surface():
    torch.manual_seed(0)
    # points on the plane x + y + z = 1, with its normal
    g = torch.Generator().manual_seed(0)
    uv = torch.rand(30, 2, generator=g)
    pos = torch.stack([uv[:, 0], uv[:, 1], 1 - uv.sum(1)], dim=1)
    normal = torch.full((30, 3), 3**-0.5)
    out = RandomAnisotropicScale(0.3, 3.0)(Data(pos=pos, normal=normal))
    tangent = out.pos[1:] - out.pos[:1]
    torch.testing.assert_close(
        tangent @ out.normal[0], torch.zeros(29), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(out.normal.norm(dim=1), torch.ones(30))


def test_batch_scales_each_graph():
    torch.manual_seed(0)
    batch = Batch.from_data_list(
        [Data(pos=torch.ones(2, 3)), Data(pos=torch.ones(2, 3))]
    )
    out = RandomAnisotropicScale()(batch)
    torch.testing.assert_close(out.pos[0], out.pos[1])
    assert not torch.allclose(out.pos[0], out.pos[2])


def test_repr_and_errors():
    assert (
        repr(RandomAnisotropicScale(0.8, 1.25))
        == "RandomAnisotropicScale(lo=0.8, hi=1.25)"
    )
    with pytest.raises(ValueError):
        RandomAnisotropicScale(2.0, 1.0)
