import torch
from torch_geometric.data import Data

from itnet_geo.transforms import RandomJitter


def test_jitter_is_clipped_and_touches_only_pos():
    torch.manual_seed(0)
    normal = torch.randn(500, 3)
    data = Data(pos=torch.zeros(500, 3), normal=normal, y=torch.tensor([0]))
    out = RandomJitter(sigma=0.1, clip=0.05)(data)
    assert float(out.pos.abs().max()) <= 0.05 + 1e-7
    assert float(out.pos.abs().max()) > 0.04  # the clip is reached with sigma = 2 clip
    assert out.normal is normal and out.y.tolist() == [0]
    assert torch.equal(data.pos, torch.zeros(500, 3))


def test_jitter_statistics_without_clip():
    torch.manual_seed(0)
    out = RandomJitter(sigma=0.02, clip=None)(Data(pos=torch.zeros(20000, 3)))
    assert abs(float(out.pos.std()) - 0.02) < 0.001
    assert abs(float(out.pos.mean())) < 0.001


def test_zero_sigma_is_identity_and_repr():
    pos = torch.randn(5, 3)
    torch.testing.assert_close(RandomJitter(sigma=0.0)(Data(pos=pos)).pos, pos)
    assert repr(RandomJitter()) == "RandomJitter(sigma=0.01, clip=0.05)"
