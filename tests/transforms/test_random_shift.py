import pytest
import torch
from torch_geometric.data import Batch, Data

from itnet_geo.transforms import RandomShift


def test_one_offset_per_shape_within_bound():
    torch.manual_seed(0)
    pos = torch.rand(50, 3)
    offsets = []
    for _ in range(200):
        out = RandomShift(0.2)(Data(pos=pos.clone()))
        offset = out.pos - pos
        torch.testing.assert_close(offset, offset[:1].expand_as(offset))
        offsets.append(offset[0])
    offsets = torch.stack(offsets)
    assert bool(offsets.abs().max() <= 0.2)
    # uniform on [-0.2, 0.2]: spread over most of the range, centred
    assert offsets.abs().max() > 0.18
    assert offsets.mean().abs() < 4 * 0.2 / (3 * 600) ** 0.5


def test_batch_shifts_each_graph_and_keeps_normals():
    torch.manual_seed(0)
    normal = torch.nn.functional.normalize(torch.rand(2, 3), dim=1)
    data = [Data(pos=torch.zeros(2, 3), normal=normal) for _ in range(2)]
    out = RandomShift()(Batch.from_data_list(data))
    torch.testing.assert_close(out.pos[0], out.pos[1])
    assert not torch.allclose(out.pos[0], out.pos[2])
    torch.testing.assert_close(out.normal, torch.cat([normal, normal]))


def test_repr_and_errors():
    assert repr(RandomShift(0.1)) == "RandomShift(shift=0.1)"
    with pytest.raises(ValueError, match="non-negative"):
        RandomShift(-1.0)
    with pytest.raises(ValueError, match="needs 'pos'"):
        RandomShift()(Data(x=torch.zeros(2, 3)))
