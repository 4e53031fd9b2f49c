import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from itnet_geo.nn import ITNetClassifier, MeshITNet
from itnet_geo.nn.models import MODELS, PRESETS, build_model
from itnet_geo.nn.models._blocks import farthest_point_sample, random_sample
from itnet_geo.ops import fps

SMALL = dict(
    num_points=64,
    embed_channels=8,
    channels=[16, 32],
    ratios=[0.5, 0.25],
    k=[8, 8],
    depth=[1, 1],
    hidden=8,
    heads=4,
    head_channels=[16],
)


def clouds(num, n=64, in_channels=0, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(num):
        pos = torch.randn(n, 3, generator=gen, dtype=dtype)
        data = Data(pos=pos, y=torch.tensor([i % 4]))
        if in_channels:
            data.x = torch.randn(n, in_channels, generator=gen, dtype=dtype)
        items.append(data)
    return items


def octahedron():
    pos = torch.tensor(
        [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    )
    antipode = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4}
    edges = [(i, j) for i in range(6) for j in range(6) if i != j and antipode[i] != j]
    edge_index = torch.tensor(edges).t()
    # Eight equilateral faces of side sqrt(2); a vertex touches four of them.
    area = 4 * (math.sqrt(3) / 4 * 2) / 3
    x = torch.tensor(
        [[0.1, 0.2], [0.1, 0.25], [0.3, 0.2], [0.3, 0.1], [0.5, 0.4], [0.5, 0.45]]
    )
    return Data(pos=pos, edge_index=edge_index, weight=torch.full((6,), area), x=x)


def tetrahedron():
    pos = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    edges = [(i, j) for i in range(4) for j in range(4) if i != j]
    x = torch.tensor([[0.2, 0.1], [0.4, 0.3], [0.6, 0.5], [0.8, 0.7]])
    return Data(
        pos=pos,
        edge_index=torch.tensor(edges).t(),
        weight=torch.full((4,), 2 * math.sqrt(3)),
        x=x,
    )


def rotation(seed):
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(torch.float32)


# ------------------------------------------------------------ ITNetClassifier
@pytest.mark.parametrize("in_channels", [0, 3])
@pytest.mark.parametrize("sampler", ["fps", "random"])
def test_classifier_output_shape(in_channels, sampler):
    torch.manual_seed(0)
    model = ITNetClassifier(5, in_channels, sampler=sampler, **SMALL)
    data = Batch.from_data_list(clouds(3, in_channels=in_channels))
    out = model(data)
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()
    model.eval()
    assert model(data).shape == (3, 5)


def test_classifier_single_cloud_without_batch_vector():
    torch.manual_seed(0)
    model = ITNetClassifier(4, **SMALL).eval()
    data = clouds(1)[0]
    with torch.no_grad():
        single = model(data)
        batched = model(Batch.from_data_list([data]))
    assert single.shape == (1, 4)
    torch.testing.assert_close(single, batched)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sampler": "random"},
        {"tile_size": None, "kernel": "channel", "measure": "mean"},
        {"neighborhood": "radius", "radius": [0.6, 1.2], "max_neighbors": 16},
        {"kernel": "lowrank", "measure": "sum", "norm": "layer"},
        {"value_pos": True, "hidden": [16, 32]},
    ],
)
def test_classifier_batch_independence(options):
    torch.manual_seed(0)
    model = ITNetClassifier(5, **{**SMALL, **options}).double().eval()
    items = clouds(4, n=48, dtype=torch.float64)
    items[2] = Data(pos=torch.randn(80, 3, dtype=torch.float64), y=torch.tensor([0]))
    with torch.no_grad():
        alone = torch.cat([model(Batch.from_data_list([d])) for d in items])
        together = model(Batch.from_data_list(items))
    torch.testing.assert_close(together, alone)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"tile_size": None},
        {"mc_ratio": 0.5},
        {"value_pos": True, "hidden": [16, 32]},
    ],
)
def test_classifier_gradients_reach_all_parameters(options):
    torch.manual_seed(0)
    model = ITNetClassifier(4, 3, **{**SMALL, **options})
    data = Batch.from_data_list(clouds(4, in_channels=3))
    loss = F.cross_entropy(model(data), data.y)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "options", [{}, {"value_pos": True, "hidden": [16, 32]}, {"hidden": [4, 12]}]
)
def test_classifier_fused_path_equals_reference_path(options):
    torch.manual_seed(0)
    fused = ITNetClassifier(4, **{**SMALL, **options}).double().eval()
    reference = ITNetClassifier(4, **{**SMALL, **options, "tile_size": None})
    reference = reference.double().eval()
    reference.load_state_dict(fused.state_dict())
    data = Batch.from_data_list(clouds(3, dtype=torch.float64))
    outputs = []
    for model in (fused, reference):
        out = model(data)
        out.pow(2).sum().backward()
        outputs.append((out, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    for got, want in zip(outputs[0][1], outputs[1][1], strict=True):
        torch.testing.assert_close(got, want)


def test_classifier_value_pos_carries_the_neighbourhood_shape():
    # Constant point features (a zero embedding): a softmax kernel then
    # averages equal values, and the integral cannot tell two shapes apart;
    # positional values can.
    torch.manual_seed(0)
    options = {**SMALL, "depth": 0, "kernel_inputs": ["rel_pos"]}
    plain = ITNetClassifier(3, **options)
    with_pos = ITNetClassifier(3, **{**options, "value_pos": True, "hidden": [16, 32]})
    line = torch.zeros(64, 3)
    line[:, 0] = torch.linspace(-1, 1, 64)
    data = Batch.from_data_list([Data(pos=line), Data(pos=torch.randn(64, 3))])
    out = []
    for model in (plain, with_pos):
        model.embed = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU())
        torch.nn.init.zeros_(model.embed[0].weight)
        with torch.no_grad():
            out.append(model.eval()(data))
    torch.testing.assert_close(out[0][0], out[0][1])
    assert (out[1][0] - out[1][1]).abs().max() > 1e-3


def test_classifier_no_gradient_leak_across_clouds():
    torch.manual_seed(0)
    model = ITNetClassifier(4, **SMALL).eval()
    items = clouds(3)
    data = Batch.from_data_list(items)
    data.pos.requires_grad_(True)
    model(data)[1].sum().backward()
    grad = data.pos.grad
    mask = data.batch == 1
    assert grad[mask].abs().sum() > 0
    assert grad[~mask].abs().sum() == 0


def test_classifier_config_round_trip():
    torch.manual_seed(0)
    model = ITNetClassifier(6, 3, **SMALL).eval()
    config = json.loads(json.dumps(model.config))
    assert config["num_classes"] == 6 and config["in_channels"] == 3
    rebuilt = build_model(model.name, **config).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    data = Batch.from_data_list(clouds(2, in_channels=3))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(data), model(data))


def test_classifier_deterministic_given_seed():
    data = Batch.from_data_list(clouds(3))
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = ITNetClassifier(4, **SMALL)
        outs.append(model(data))  # training mode: random FPS start, dropout
    torch.testing.assert_close(outs[0], outs[1])


def test_classifier_reset_parameters():
    torch.manual_seed(0)
    model = ITNetClassifier(4, **SMALL)
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1)
    model.reset_parameters()
    first = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1)
    model.reset_parameters()
    second = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, first, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_classifier_overfits_a_few_clouds():
    torch.manual_seed(0)
    model = ITNetClassifier(4, **{**SMALL, "dropout": 0.0})
    data = Batch.from_data_list(clouds(8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(model(data), data.y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.3 * losses[0]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_run(name):
    torch.manual_seed(0)
    model = ITNetClassifier.from_preset(name, num_classes=10)
    assert model.config["num_classes"] == 10
    for key, value in PRESETS[name].items():
        assert model.config[key] == value
    data = Batch.from_data_list(clouds(2, n=1024))
    with torch.no_grad():
        assert model.eval()(data).shape == (2, 10)


def test_from_preset_overrides_and_unknown_name():
    model = ITNetClassifier.from_preset("cpu-1h", num_classes=3, sampler="random")
    assert model.config["sampler"] == "random"
    with pytest.raises(ValueError, match="unknown preset"):
        ITNetClassifier.from_preset("tiny", num_classes=3)


def test_classifier_errors():
    model = ITNetClassifier(4, 3, **SMALL)
    with pytest.raises(ValueError, match="needs x"):
        model(Batch.from_data_list(clouds(2)))
    with pytest.raises(ValueError, match="one entry per stage"):
        ITNetClassifier(4, **{**SMALL, "k": [8, 8, 8]})
    with pytest.raises(ValueError, match="ratios"):
        ITNetClassifier(4, **{**SMALL, "ratios": [0.5, 0.0]})
    with pytest.raises(ValueError, match="radius"):
        ITNetClassifier(4, **{**SMALL, "neighborhood": "radius"})
    with pytest.raises(ValueError, match="hidden must equal channels"):
        ITNetClassifier(4, **{**SMALL, "value_pos": True})
    with pytest.raises(ValueError, match="one entry per stage"):
        ITNetClassifier(4, **{**SMALL, "hidden": [8, 8, 8]})
    with pytest.raises(ValueError, match="unknown sampler"):
        ITNetClassifier(4, **{**SMALL, "sampler": "grid"})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("pointnet", num_classes=3)


def test_classifier_repr():
    model = ITNetClassifier(4, **SMALL)
    assert repr(model) == (
        "ITNetClassifier(num_classes=4, in_channels=0, channels=[16, 32], "
        "k=[8, 8], kernel=heads, measure=softmax)"
    )


def test_random_sample():
    batch = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    torch.manual_seed(0)
    idx = random_sample(batch, 3, 0.5)
    assert torch.equal(torch.bincount(batch[idx], minlength=3), torch.tensor([5, 2, 4]))
    assert idx.unique().numel() == idx.numel()
    assert torch.equal(batch[idx], batch[idx].sort().values)
    # Deterministic mode: the sample of an element does not depend on the others.
    fixed = random_sample(batch, 3, 0.5, deterministic=True)
    alone = random_sample(torch.zeros(7, dtype=torch.long), 1, 0.5, deterministic=True)
    assert torch.equal(fixed[batch[fixed] == 2] - 13, alone)


def test_farthest_point_sample_random_start_follows_torch_seed():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(30, 3, generator=gen)
    batch = torch.tensor([0] * 12 + [1] * 18)
    draws = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        draws.append(farthest_point_sample(pos, batch, 2, 0.5, random_start=True))
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(torch.bincount(batch[draws[0]]), torch.tensor([6, 9]))
    for idx in draws:  # a farthest point sample from its own first point
        for b in range(2):
            sel = idx[batch[idx] == b]
            dist = torch.cdist(pos, pos[sel[:1]]).squeeze(1)
            dist[batch != b] = -1
            for t in range(1, len(sel)):
                assert int(dist.argmax()) == int(sel[t])
                dist = torch.minimum(dist, torch.cdist(pos, pos[sel[t : t + 1]])[:, 0])
    fixed = farthest_point_sample(pos, batch, 2, 0.5, random_start=False)
    assert torch.equal(fixed, fps(pos, batch, 0.5, random_start=False))


# ------------------------------------------------------------------ MeshITNet
MESH = dict(channels=16, depth=2, hidden=8, head_channels=[16])


def test_mesh_output_shape_and_gradients():
    torch.manual_seed(0)
    model = MeshITNet(3, in_channels=2, **MESH)
    data = Batch.from_data_list([octahedron(), tetrahedron()])
    out = model(data)
    assert out.shape == (2, 3)
    out.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_mesh_is_intrinsic():
    # No coordinates in the features or the kernel: rotating, moving and
    # scaling a mesh (its areas with it) leaves the logits unchanged.
    torch.manual_seed(0)
    model = MeshITNet(3, in_channels=2, **MESH).eval()
    mesh = octahedron()
    moved = mesh.clone()
    moved.pos = 2.5 * mesh.pos @ rotation(0).T + torch.tensor([1.0, -2.0, 0.5])
    moved.weight = mesh.weight * 2.5**2
    with torch.no_grad():
        torch.testing.assert_close(model(moved), model(mesh))


def test_mesh_vertex_permutation_and_batch_independence():
    torch.manual_seed(0)
    model = MeshITNet(
        3, in_channels=2, kernel_inputs=["rel_pos", "x_i", "x_j"], use_pos=True, **MESH
    ).eval()
    mesh, other = octahedron(), tetrahedron()
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    inv = torch.argsort(perm)
    permuted = Data(
        pos=mesh.pos[perm],
        x=mesh.x[perm],
        weight=mesh.weight[perm],
        edge_index=inv[mesh.edge_index],
    )
    with torch.no_grad():
        alone = model(mesh)
        torch.testing.assert_close(model(permuted), alone)
        batched = model(Batch.from_data_list([other, mesh]))
        torch.testing.assert_close(batched[1:], alone)


def test_mesh_without_features_and_config_round_trip():
    torch.manual_seed(0)
    model = MeshITNet(2, **MESH).eval()
    mesh = octahedron()
    mesh.x = None
    config = json.loads(json.dumps(model.config))
    rebuilt = build_model("mesh_itnet", **config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = model(mesh)
        torch.testing.assert_close(rebuilt(mesh), out)
    assert out.shape == (1, 2)
    with pytest.raises(ValueError, match="needs x"):
        MeshITNet(2, in_channels=4, **MESH)(mesh)


def test_mesh_repr_and_registry():
    model = MeshITNet(30, in_channels=16)
    assert repr(model) == (
        "MeshITNet(num_classes=30, in_channels=16, channels=64, depth=4, "
        "kernel=channel, measure=mean)"
    )
    assert MODELS["itnet_classifier"] is ITNetClassifier
    assert MODELS["mesh_itnet"] is MeshITNet
