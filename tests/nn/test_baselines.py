import json

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MLP, PointNetConv

from itnet_geo.nn.models import DGCNN, MODELS, PointNet2SSG, build_model
from itnet_geo.nn.models._blocks import farthest_point_sample
from itnet_geo.ops import radius


def clouds(num, n=64, in_channels=0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(num):
        data = Data(pos=torch.rand(n, 3, generator=gen), y=torch.tensor([i % 4]))
        if in_channels:
            data.x = torch.randn(n, in_channels, generator=gen)
        items.append(data)
    return items


@pytest.mark.parametrize("cls", [PointNet2SSG, DGCNN])
@pytest.mark.parametrize("in_channels", [0, 3])
def test_output_shape_and_gradients(cls, in_channels):
    torch.manual_seed(0)
    options = {"k": 8} if cls is DGCNN else {}
    model = cls(5, in_channels, **options)
    data = Batch.from_data_list(clouds(3, in_channels=in_channels))
    logits = model(data)
    assert logits.shape == (3, 5)
    F.cross_entropy(logits, data.y).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("cls", [PointNet2SSG, DGCNN])
def test_registry_and_config_round_trip(cls):
    torch.manual_seed(0)
    assert MODELS[cls.name] is cls
    model = cls(6, 3).eval()
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model(model.name, num_points=1024, **config).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    data = Batch.from_data_list(clouds(2, in_channels=3))
    torch.manual_seed(1)  # the same random FPS starts for both
    expected = model(data)
    torch.manual_seed(1)
    torch.testing.assert_close(rebuilt(data), expected)


def test_pointnet2_first_stage_is_pyg_set_abstraction():
    # the first stage equals PyG's PointNetConv on the same radius graph
    torch.manual_seed(0)
    model = PointNet2SSG(4).eval()
    data = Batch.from_data_list(clouds(2))
    torch.manual_seed(3)
    x, pos, batch = model.sa1(None, data.pos, data.batch, 2)
    conv = PointNetConv(MLP([3, 64, 64, 128]), add_self_loops=False).eval()
    conv.load_state_dict(model.sa1.conv.state_dict())
    torch.manual_seed(3)
    idx = farthest_point_sample(data.pos, data.batch, 2, 0.5, True)
    row, col = radius(
        data.pos, data.pos[idx], 0.2, data.batch, data.batch[idx], max_num_neighbors=64
    )
    expected = conv(
        (None, None), (data.pos, data.pos[idx]), torch.stack([col, row], dim=0)
    )
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(pos, data.pos[idx])


@pytest.mark.parametrize("cls", [PointNet2SSG, DGCNN])
def test_overfits_a_few_clouds(cls):
    torch.manual_seed(0)
    model = cls(4, **({"k": 8} if cls is DGCNN else {}))
    model.head.dropout = [0.0] * len(model.head.dropout)
    data = Batch.from_data_list(clouds(8, n=48))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = F.cross_entropy(model(data), data.y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0]


@pytest.mark.parametrize("cls", [PointNet2SSG, DGCNN])
def test_errors(cls):
    with pytest.raises(ValueError, match="num_classes"):
        cls(0)
    with pytest.raises(ValueError, match="in_channels"):
        cls(4, -1)
