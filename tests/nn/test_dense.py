import pytest
import torch
from torch.testing import assert_close

from itnet_geo.nn import ImageIT, ITConv, KernelMLP, SequenceIT
from itnet_geo.nn.dense import OffsetOneHot

MEASURES = ["sum", "mean", "softmax", "max"]
KERNELS = ["channel", "heads", "lowrank"]


def _seq(grid="full", measure="sum", kernel="channel", **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden", 8)
    kwargs.setdefault("heads", 2)
    kwargs.setdefault("rank", 3)
    layer = SequenceIT(4, 6, grid=grid, measure=measure, kernel=kernel, **kwargs)
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.normal_()
    return layer.double()


def _x(*shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _edges_1d(length, grid, window=None, stride=1, pad=(0, 0), dilation=1):
    """Edges (source, target) of a sequence grid; targets are output indices."""
    src, dst, num_dst = [], [], 0
    if grid in ("full", "causal"):
        targets = list(range(0, length, stride))
        for o, p in enumerate(targets):
            for j in range(length):
                if grid == "full" or j <= p:
                    src.append(j)
                    dst.append(o)
        num_dst = len(targets)
    else:
        num_dst = (length + pad[0] + pad[1] - dilation * (window - 1) - 1) // stride + 1
        for o in range(num_dst):
            for k in range(window):
                j = o * stride - pad[0] + k * dilation
                if 0 <= j < length:
                    src.append(j)
                    dst.append(o)
    return torch.tensor([src, dst]), num_dst


def _batched(edge_index, b, num_src, num_dst):
    parts = [
        edge_index + torch.tensor([[k * num_src], [k * num_dst]]) for k in range(b)
    ]
    return torch.cat(parts, dim=1)


def _as_itconv(layer, pos_dim=1):
    conv = ITConv(
        layer.in_channels,
        layer.out_channels,
        pos_dim=pos_dim,
        kernel_inputs=layer.kernel_inputs,
        kernel=layer.kernel,
        hidden=layer.hidden,
        heads=layer.heads,
        rank=layer.rank,
        measure=layer.measure,
        num_layers=layer.num_layers,
        value=layer.value,
        bias=layer.bias is not None,
    ).double()
    conv.load_state_dict(layer.state_dict())
    return conv


def test_repr():
    assert repr(SequenceIT(16, 32, grid="causal")) == (
        "SequenceIT(16, 32, grid=causal, kernel=channel, measure=sum)"
    )
    assert repr(SequenceIT(16, 32, grid="window", window=5, measure="softmax")) == (
        "SequenceIT(16, 32, grid=window(5), kernel=channel, measure=softmax)"
    )
    assert repr(ImageIT(3, 8, kernel="lowrank")) == (
        "ImageIT(3, 8, grid=window(3, 3), kernel=lowrank, measure=sum)"
    )


def test_kernel_is_the_graph_kernel():
    assert type(SequenceIT(4, 4).kernel_nn) is KernelMLP
    assert type(ImageIT(4, 4).kernel_nn) is KernelMLP


@pytest.mark.parametrize(
    "kwargs, length, out_len",
    [
        (dict(grid="full"), 11, 11),
        (dict(grid="causal"), 11, 11),
        (dict(grid="full", stride=3), 11, 4),
        (dict(grid="window(5)"), 11, 11),
        (dict(grid="window", window=4, padding="same"), 11, 11),
        (dict(grid="window(3)", padding="valid", stride=2), 11, 5),
        (dict(grid="window(3)", padding=(2, 0), dilation=2), 11, 9),
    ],
)
def test_sequence_shapes(kwargs, length, out_len):
    layer = _seq(kernel_inputs=("rel_pos", "x_j"), **kwargs)
    assert layer(_x(2, length, 4)).shape == (2, out_len, 6)


@pytest.mark.parametrize(
    "kwargs, out_hw",
    [
        (dict(grid="window(3, 3)"), (7, 6)),
        (dict(grid="window(3,2)", stride=2, padding=1), (4, 4)),
        (dict(grid="window", window=(2, 3), padding="valid", dilation=(2, 1)), (5, 4)),
        (dict(grid="full", stride=(2, 3)), (4, 2)),
    ],
)
def test_image_shapes(kwargs, out_hw):
    torch.manual_seed(0)
    layer = ImageIT(3, 5, hidden=8, kernel_inputs=("rel_pos", "x_j"), **kwargs).double()
    x = _x(2, 3, 7, 6)
    assert layer(x).shape == (2, 5) + out_hw
    assert layer(x[0]).shape == (5,) + out_hw  # unbatched, like Conv2d


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "grid, kwargs",
    [
        ("full", {}),
        ("causal", {}),
        ("window", dict(window=3, padding=(2, 1), dilation=2)),
        ("full", dict(stride=2)),
    ],
)
def test_sequence_equals_itconv(grid, kwargs, measure, kernel):
    """The dense tiles compute ITConv's integral on the grid's edges."""
    layer = _seq(
        grid,
        measure,
        kernel,
        kernel_inputs=("rel_pos", "x_i", "x_j"),
        tile_size=3,
        **kwargs,
    )
    conv = _as_itconv(layer)
    b, length = 2, 9
    x = _x(b, length, 4)
    out = layer(x)
    pad = layer._pad[0] if layer._pad is not None else (0, 0)
    edge_index, num_dst = _edges_1d(
        length,
        grid,
        layer.window and layer.window[0],
        layer.stride[0],
        pad,
        layer.dilation[0],
    )
    anchors = torch.arange(num_dst) * layer.stride[0]
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    ref = conv(
        (x.reshape(b * length, 4), x[:, anchors].reshape(b * num_dst, 4)),
        (pos.repeat(b, 1), anchors.double()[:, None].repeat(b, 1)),
        _batched(edge_index, b, length, num_dst),
    )
    assert_close(out, ref.view(b, num_dst, -1))


@pytest.mark.parametrize("measure", MEASURES)
def test_image_equals_itconv(measure):
    torch.manual_seed(0)
    layer = ImageIT(
        3,
        4,
        grid="window(3, 2)",
        stride=(2, 1),
        padding=(1, 0),
        hidden=8,
        measure=measure,
    ).double()
    conv = _as_itconv(layer, pos_dim=2)
    b, h, w = 2, 5, 4
    x = _x(b, 3, h, w)
    out = layer(x)  # (B, 4, 3, 3)
    ho, wo = out.shape[-2:]
    src, dst = [], []
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(3):
                for kx in range(2):
                    y, xx = oy * 2 - 1 + ky, ox + kx
                    if 0 <= y < h and 0 <= xx < w:
                        src.append(y * w + xx)
                        dst.append(oy * wo + ox)
    edge_index = _batched(torch.tensor([src, dst]), b, h * w, ho * wo)
    pos = torch.stack(
        torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1
    )
    pos = pos.reshape(-1, 2).double()
    anchors = torch.stack(
        torch.meshgrid(torch.arange(ho) * 2, torch.arange(wo), indexing="ij"), -1
    ).reshape(-1, 2)
    x_src = x.flatten(2).transpose(1, 2)
    x_dst = x_src[:, anchors[:, 0] * w + anchors[:, 1]]
    ref = conv(
        (x_src.reshape(-1, 3), x_dst.reshape(-1, 3)),
        (pos.repeat(b, 1), anchors.double().repeat(b, 1)),
        edge_index,
    )
    assert_close(out, ref.view(b, ho, wo, 4).permute(0, 3, 1, 2))


def test_image_full_grid_equals_itconv():
    torch.manual_seed(0)
    layer = ImageIT(3, 4, grid="full", hidden=8, measure="softmax").double()
    conv = _as_itconv(layer, pos_dim=2)
    x = _x(1, 3, 4, 3)
    pos = torch.stack(
        torch.meshgrid(torch.arange(4), torch.arange(3), indexing="ij"), -1
    )
    n = 12
    edge_index = torch.stack(
        [torch.arange(n).repeat(n), torch.arange(n).repeat_interleave(n)]
    )
    x_nodes = x.flatten(2).transpose(1, 2)[0]
    ref = conv(x_nodes, pos.reshape(-1, 2).double(), edge_index)
    assert_close(layer(x), ref.T.reshape(1, 4, 4, 3))


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize(
    "grid, kernel",
    [
        ("full", "heads"),
        ("causal", "heads"),
        ("window(4)", "heads"),
        ("full", "lowrank"),
        ("causal", "channel"),
    ],
)
def test_tile_size_invariance(grid, measure, kernel):
    layer = _seq(grid, measure, kernel, tile_size=64)
    x = _x(2, 10, 4).requires_grad_()
    ref = layer(x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    for tile_size, source_tile in [(1, None), (4, 3)]:
        layer.tile_size, layer.source_tile = tile_size, source_tile
        out = layer(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        assert_close(out, ref)
        assert_close(grad, g_ref)


@pytest.mark.parametrize("measure", MEASURES)
def test_causal_does_not_look_ahead(measure):
    layer = _seq("causal", measure, tile_size=4, source_tile=3)
    x = _x(2, 12, 4)
    out = layer(x)
    future = x.clone()
    future[:, 7:] += _x(2, 5, 4, seed=5)
    perturbed = layer(future)
    assert_close(perturbed[:, :7], out[:, :7])
    assert (perturbed[:, 7:] - out[:, 7:]).abs().amax() > 1e-3


def test_sequence_window_is_local():
    layer = _seq(
        "window(3)",
        "softmax",
        padding=(1, 1),
        dilation=2,
        kernel_inputs=("rel_pos", "x_j"),
    )
    x = _x(1, 15, 4)
    out = layer(x)
    bumped = x.clone()
    bumped[:, 8] += 1.0
    changed = (layer(bumped) - out).abs().amax(-1)[0] > 1e-12
    # target o reads o - 1, o + 1, o + 3: position 8 is read by 9, 7 and 5
    assert changed.nonzero().view(-1).tolist() == [5, 7, 9]


def test_image_window_is_local():
    torch.manual_seed(0)
    layer = ImageIT(2, 3, grid="window(3, 3)", hidden=8).double()
    x = _x(1, 2, 8, 8)
    out = layer(x)
    bumped = x.clone()
    bumped[:, :, 4, 2] += 1.0
    changed = (layer(bumped) - out).abs().amax(1)[0] > 1e-12
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[3:6, 1:4] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("measure", ["sum", "mean", "softmax"])
def test_per_source_weight_and_mask(measure):
    layer = _seq("full", measure)
    conv = _as_itconv(layer)
    b, length = 2, 6
    x = _x(b, length, 4)
    weight = _x(b, length, seed=3).abs() + 0.1
    mask = torch.ones(length, dtype=torch.bool)
    mask[2] = False
    out = layer(x, weight=weight, mask=mask)
    edge_index, _ = _edges_1d(length, "full")
    edge_index = edge_index[:, mask[edge_index[0]]]
    pos = torch.arange(length, dtype=torch.float64)[:, None].repeat(b, 1)
    ref = conv(
        x.reshape(-1, 4),
        pos,
        _batched(edge_index, b, length, length),
        weight=weight.reshape(-1),
    )
    assert_close(out, ref.view(b, length, -1))


def test_per_pair_weight_per_head():
    """A (B, T, S, K) weight multiplies each head's kernel separately."""
    layer = _seq("full", "sum", "heads", tile_size=2, source_tile=3)
    x = _x(1, 5, 4)
    weight = _x(1, 5, 5, 2, seed=4).abs()
    out = layer(x, weight=weight)
    coef = layer.kernel_weights(x, weight=weight)  # (1, T, S, K)
    value = layer.lin_value(x).view(1, 5, 2, 3)
    ref = torch.einsum("btsk,bskc->btkc", coef, value).flatten(2) + layer.bias
    assert_close(out, ref)


def test_softmax_kernel_weights_are_attention():
    layer = _seq("causal", "softmax", "heads", tile_size=3)
    x = _x(2, 7, 4)
    coef = layer.kernel_weights(x)
    assert coef.shape == (2, 7, 7, 2)
    assert_close(coef.sum(2), torch.ones(2, 7, 2, dtype=torch.float64))
    future = torch.ones(7, 7).triu(1).bool()
    assert torch.all(coef[:, future] == 0)
    value = layer.lin_value(x).view(2, 7, 2, 3)
    ref = torch.einsum("btsk,bskc->btkc", coef, value).flatten(2) + layer.bias
    assert_close(layer(x), ref)


@pytest.mark.parametrize("measure", MEASURES)
def test_empty_support_gives_zero(measure):
    layer = _seq("full", measure, bias=False)
    x = _x(1, 5, 4).requires_grad_()
    mask = torch.ones(1, 5, 5, dtype=torch.bool)
    mask[0, 2] = False  # target 2 sees nothing
    out = layer(x, mask=mask)
    assert torch.equal(out[0, 2], torch.zeros(6, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()


def test_bipartite_input():
    torch.manual_seed(0)
    layer = SequenceIT(
        (4, 3),
        6,
        grid="causal",
        measure="softmax",
        hidden=8,
        kernel_inputs=("rel_pos", "x_i", "x_j"),
    ).double()
    x_src, x_dst = _x(2, 9, 4), _x(2, 5, 3, seed=2)
    out = layer((x_src, x_dst))
    assert out.shape == (2, 5, 6)
    x_src2 = x_src.clone()
    x_src2[:, 5:] += 1.0  # sources after the last target
    assert_close(layer((x_src2, x_dst)), out)


def test_checkpoint_gives_the_same_gradients():
    layer = _seq("full", "softmax", "heads", tile_size=3, source_tile=4)
    x = _x(2, 9, 4).requires_grad_()
    grads = []
    for ckpt in (True, False):
        layer.checkpoint = ckpt
        layer.zero_grad()
        out = layer(x)
        (gx,) = torch.autograd.grad(out.square().sum(), x, retain_graph=True)
        out.square().sum().backward()
        grads.append([gx] + [p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads, strict=True):
        assert_close(a, b)


def test_gradcheck():
    layer = _seq("causal", "softmax", hidden=4, tile_size=2, source_tile=2)
    x = _x(1, 4, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))


def test_no_gradient_leak_across_batch():
    layer = _seq("full", "softmax")
    x = _x(3, 6, 4).requires_grad_()
    (grad,) = torch.autograd.grad(layer(x)[1].sum(), x)
    assert torch.all(grad[0] == 0) and torch.all(grad[2] == 0)
    assert grad[1].abs().sum() > 0


def test_parameters_get_finite_gradients():
    layer = _seq("window(3)", "mean", "lowrank")
    layer(_x(2, 8, 4)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_offset_one_hot():
    table = OffsetOneHot.for_window((2, 3), dilation=(1, 2), padding="same")
    assert table.offsets.tolist() == [[0, -2], [0, 0], [0, 2], [1, -2], [1, 0], [1, 2]]
    hot = table(torch.tensor([[1.0, 0.0], [3.0, 3.0]]))
    assert hot.tolist() == [[0, 0, 0, 0, 1, 0], [0] * 6]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid="banana"), "unknown grid"),
        (dict(grid="window"), "window size"),
        (dict(grid="full", window=3), "only applies"),
        (dict(kernel="full"), "dense adapters support"),
        (dict(measure="median"), "unknown measure"),
        (dict(tile_size=0), "tile_size"),
        (dict(kernel="heads", heads=4), "divisible"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceIT(4, 6, **kwargs)


def test_bad_inputs():
    layer = _seq("full")
    with pytest.raises(ValueError, match="expects sources"):
        layer(_x(2, 5, 3))
    with pytest.raises(ValueError, match="per-pair weight"):
        layer(_x(2, 5, 4), weight=_x(2, 4, 5))
    with pytest.raises(ValueError, match="bool"):
        layer(_x(2, 5, 4), mask=_x(2, 5))
    with pytest.raises(ValueError, match="causal"):
        ImageIT(3, 4, grid="causal")
    with pytest.raises(ValueError, match="smaller than the window"):
        ImageIT(3, 4, grid="window(5, 5)", padding="valid")(_x(1, 3, 3, 3))
