import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import NormalizeUnitSphere


def test_unit_radius_and_centred():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(200, 3, generator=g) * torch.tensor([5.0, 1.0, 0.1]) + 7
    normal = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=1)
    data = Data(pos=pos, normal=normal, y=torch.tensor([2]))
    out = NormalizeUnitSphere()(data)
    torch.testing.assert_close(out.pos.norm(dim=1).max(), torch.tensor(1.0))
    torch.testing.assert_close(out.pos.mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    assert out.normal is normal and out.y.tolist() == [2]
    assert data.pos is pos  # input untouched
    # shape preserved: a similarity transform
    ratio = torch.cdist(out.pos, out.pos)[0, 1:] / torch.cdist(pos, pos)[0, 1:]
    torch.testing.assert_close(ratio, ratio[0].expand_as(ratio))


def test_large_raw_coordinates():
    pos = torch.tensor([[1e5, 2e5, 3e5], [1e5 + 2, 2e5, 3e5]], dtype=torch.float32)
    out = NormalizeUnitSphere()(Data(pos=pos))
    torch.testing.assert_close(out.pos, torch.tensor([[-1.0, 0, 0], [1, 0, 0]]))


def test_degenerate_single_point_is_centred():
    out = NormalizeUnitSphere()(Data(pos=torch.tensor([[3.0, 4.0, 5.0]])))
    assert torch.equal(out.pos, torch.zeros(1, 3))


def test_batch_normalises_each_graph():
    g = torch.Generator().manual_seed(1)
    a = Data(pos=torch.randn(30, 3, generator=g) * 100)
    b = Data(pos=torch.randn(20, 3, generator=g) + 5)
    out = NormalizeUnitSphere()(Batch.from_data_list([a, b]))
    single = [NormalizeUnitSphere()(d).pos for d in (a, b)]
    torch.testing.assert_close(out.pos, torch.cat(single))


def test_repr():
    assert repr(NormalizeUnitSphere()) == "NormalizeUnitSphere()"
