import itertools

import pytest
import torch

from itnet_geo.nn import ITConv

KERNELS = ["channel", "heads", "lowrank", "full"]
MEASURES = ["sum", "mean", "softmax", "max"]


def random_graph(num_src=12, num_dst=12, num_edges=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (num_edges,), generator=gen)
    dst = torch.randint(0, num_dst, (num_edges,), generator=gen)
    return torch.stack([src, dst])


def make_conv(kernel="channel", measure="sum", **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden", 16)
    return ITConv(
        8, 12, kernel=kernel, heads=3, rank=4, measure=measure, **kwargs
    ).double()


def inputs(num=12, channels=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num, channels, generator=gen, dtype=torch.double)
    pos = torch.randn(num, 3, generator=gen, dtype=torch.double)
    return x, pos


def test_repr():
    assert repr(ITConv(64, 128)) == "ITConv(64, 128, kernel=channel, measure=sum)"
    conv = ITConv((16, 32), 8, kernel="lowrank", measure="softmax")
    assert repr(conv) == "ITConv((16, 32), 8, kernel=lowrank, measure=softmax)"


@pytest.mark.parametrize("kernel, measure", list(itertools.product(KERNELS, MEASURES)))
def test_output_shape_and_finite_gradients(kernel, measure):
    conv = make_conv(kernel, measure)
    x, pos = inputs()
    x.requires_grad_()
    out = conv(x, pos, random_graph())
    assert out.shape == (12, 12)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, param in conv.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("kernel, measure", list(itertools.product(KERNELS, MEASURES)))
@pytest.mark.parametrize("tile_size", [None, 5])
def test_edge_permutation_changes_nothing(kernel, measure, tile_size):
    conv = make_conv(kernel, measure, tile_size=tile_size)
    x, pos = inputs()
    edge_index = random_graph()
    weight = torch.rand(edge_index.size(1), dtype=torch.double) + 0.1
    perm = torch.randperm(
        edge_index.size(1), generator=torch.Generator().manual_seed(3)
    )
    out = conv(x, pos, edge_index, weight)
    torch.testing.assert_close(conv(x, pos, edge_index[:, perm], weight[perm]), out)


@pytest.mark.parametrize("kernel, measure", list(itertools.product(KERNELS, MEASURES)))
def test_bipartite(kernel, measure):
    torch.manual_seed(0)
    conv = ITConv(
        (8, 5),
        12,
        kernel=kernel,
        heads=3,
        rank=4,
        measure=measure,
        kernel_inputs=("rel_pos", "x_i", "x_j"),
    ).double()
    x_src, pos_src = inputs(10, 8)
    x_dst, pos_dst = inputs(4, 5, seed=2)
    edge_index = random_graph(10, 4, 30)
    out = conv((x_src, x_dst), (pos_src, pos_dst), edge_index)
    assert out.shape == (4, 12)
    conv.tile_size = 7
    torch.testing.assert_close(
        conv((x_src, x_dst), (pos_src, pos_dst), edge_index), out
    )


def test_empty_neighbourhoods_give_zero_plus_bias():
    for measure in MEASURES:
        conv = make_conv(measure=measure)
        torch.nn.init.normal_(conv.bias)
        x, pos = inputs()
        edge_index = random_graph(12, 6, 20)  # targets 6..11 have no edges
        for tile_size in (None, 4):
            conv.tile_size = tile_size
            out = conv(x, pos, edge_index)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(out[6:], conv.bias.expand(6, -1))


def test_no_edges_and_no_nodes():
    conv = make_conv()
    x, pos = inputs()
    empty = torch.empty(2, 0, dtype=torch.long)
    for tile_size in (None, 8):
        conv.tile_size = tile_size
        out = conv(x, pos, empty)
        torch.testing.assert_close(out, conv.bias.expand(12, -1))
        out = conv(x[:0], pos[:0], empty)
        assert out.shape == (0, 12)


def test_no_gradient_leaks_across_batch_elements():
    # Two clouds in one graph: the output of cloud 0 does not depend on cloud 1.
    conv = make_conv(measure="softmax")
    x, pos = inputs(20)
    x.requires_grad_()
    e0 = random_graph(10, 10, 30, seed=4)
    e1 = random_graph(10, 10, 30, seed=5) + 10
    out = conv(x, pos, torch.cat([e0, e1], dim=1))
    out[:10].sum().backward()
    assert x.grad[10:].abs().max() == 0
    assert x.grad[:10].abs().max() > 0


@pytest.mark.parametrize("kernel, measure", list(itertools.product(KERNELS, MEASURES)))
def test_per_source_and_per_edge_weights_agree(kernel, measure):
    conv = make_conv(kernel, measure)
    x, pos = inputs()
    edge_index = random_graph(num_edges=30)
    node_w = torch.rand(12, dtype=torch.double) + 0.5
    torch.testing.assert_close(
        conv(x, pos, edge_index, node_w),
        conv(x, pos, edge_index, node_w[edge_index[0]]),
    )


def test_sum_measure_is_a_quadrature_rule():
    # Doubling every weight doubles a sum-measure integral (bias removed),
    # leaves mean and softmax unchanged.
    x, pos = inputs()
    edge_index = random_graph()
    w = torch.rand(12, dtype=torch.double) + 0.5
    for measure, factor in (("sum", 2.0), ("mean", 1.0), ("softmax", 1.0)):
        conv = make_conv(measure=measure, bias=False)
        torch.testing.assert_close(
            conv(x, pos, edge_index, 2 * w), factor * conv(x, pos, edge_index, w)
        )


def test_non_contiguous_inputs():
    conv = make_conv()
    x, pos = inputs(12, 16)
    x_nc = x[:, ::2]
    pos_nc = torch.cat([pos, pos], dim=1)[:, ::2]
    edge_index = random_graph().t().contiguous().t()
    assert not x_nc.is_contiguous() and not edge_index.is_contiguous()
    expected = conv(x_nc.contiguous(), pos_nc.contiguous(), edge_index.contiguous())
    for tile_size in (None, 6):
        conv.tile_size = tile_size
        torch.testing.assert_close(conv(x_nc, pos_nc, edge_index), expected)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c, x, p, e: c(x[:, :5], p, e), r"features of shape \(N, 8\)"),
        (lambda c, x, p, e: c(x, p[:, :2], e), r"positions of shape \(N, 3\)"),
        (lambda c, x, p, e: c(x, p[:5], e), "disagree on the number of nodes"),
        (lambda c, x, p, e: c(x, p, e[0]), r"shape \(2, E\)"),
        (lambda c, x, p, e: c(x, p, e.float()), "must be integer"),
        (lambda c, x, p, e: c(x, p, e, torch.ones(7)), r"weight must have shape"),
    ],
)
def test_shape_errors_name_the_shapes(call, match):
    conv = make_conv()
    x, pos = inputs()
    with pytest.raises(ValueError, match=match):
        call(conv, x, pos, random_graph())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(measure="median"), "unknown measure"),
        (dict(kernel="dense"), "unknown kernel"),
        (dict(value="zeros"), "unknown value"),
        (dict(kernel="heads", heads=5), "divisible by heads"),
        (dict(value="identity"), "in_channels == out_channels"),
        (dict(kernel="lowrank", value="ones"), "own value map"),
        (dict(value_pos=True, hidden=7), "must match"),
        (dict(value_pos="mlp"), "unknown value_pos"),
        (dict(kernel="lowrank", value_pos="linear"), "value_pos needs kernel"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ITConv(8, 12, **kwargs)


@pytest.mark.parametrize("measure", ["sum", "mean", "softmax", "max"])
@pytest.mark.parametrize("tile_size", [None, 5, 10_000])
def test_linear_value_pos_is_the_kernel_value_pos_with_the_same_map(measure, tile_size):
    # value_pos="kernel" adds the kernel's positional term W (p_j - p_i) per
    # edge; "linear" adds its own map P (p_j - p_i), folded on the fused path.
    # With P = W the two layers are one.
    kernel_mode = make_conv("heads", measure, hidden=12, value_pos=True)
    linear = make_conv("heads", measure, hidden=12, value_pos="linear")
    linear.load_state_dict(kernel_mode.state_dict(), strict=False)
    with torch.no_grad():
        linear.lin_value_pos.weight.copy_(kernel_mode.kernel_nn.pos_term.weight)
    linear.tile_size = kernel_mode.tile_size = tile_size
    x, pos = inputs()
    edge_index = random_graph()
    torch.testing.assert_close(
        linear(x, pos, edge_index), kernel_mode(x, pos, edge_index)
    )


def test_linear_value_pos_sees_relative_positions_only():
    # A shifted copy of the cloud gives the same output (up to the float32
    # rounding of the shifted input); a scaled one does not.
    conv = ITConv(
        8,
        12,
        kernel="heads",
        heads=3,
        hidden=4,
        measure="softmax",
        value_pos="linear",
        tile_size=64,
    )
    x, pos = (t.float() for t in inputs())
    edge_index = random_graph()
    near = conv(x, pos, edge_index)
    far = conv(x, pos + 100.0, edge_index)
    torch.testing.assert_close(far, near, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(conv(x, pos * 2, edge_index), near, atol=1e-3)


def test_index_past_the_nodes_is_an_error():
    conv = make_conv()
    x, pos = inputs()
    edge_index = torch.tensor([[0, 12], [1, 2]])
    with pytest.raises((IndexError, RuntimeError, ValueError)):
        conv(x, pos, edge_index)


def test_reset_parameters_reinitialises():
    conv = ITConv(8, 12)
    before = [p.detach().clone() for p in conv.parameters()]
    conv.reset_parameters()
    changed = [
        not torch.equal(a, b)
        for a, b in zip(before, conv.parameters(), strict=True)
        if a.numel() > 1 and a.abs().sum() > 0
    ]
    assert all(changed)


def test_mean_of_constant_value_kernel_is_the_neighbourhood_mean():
    # value="identity", a kernel that is identically one -> plain neighbourhood mean.
    conv = ITConv(
        4,
        4,
        kernel_inputs=("x_i",),
        num_layers=1,
        value="identity",
        measure="mean",
        bias=False,
    ).double()
    with torch.no_grad():
        conv.kernel_nn.lin_i.weight.zero_()
        conv.kernel_nn.bias.fill_(1.0)
    x, pos = inputs(12, 4)
    edge_index = random_graph()
    expected = torch.zeros(12, 4, dtype=torch.double)
    count = torch.zeros(12, dtype=torch.double)
    for j, i in edge_index.t().tolist():
        expected[i] += x[j]
        count[i] += 1
    expected = expected / count.clamp_min(1)[:, None]
    torch.testing.assert_close(conv(x, pos, edge_index), expected)


def test_torch_compile_reference_path_has_no_graph_breaks():
    import torch._dynamo

    torch._dynamo.reset()
    conv = ITConv(8, 16, measure="softmax").eval()
    x = torch.randn(20, 8)
    pos = torch.randn(20, 3)
    edge_index = random_graph(20, 20, 60)
    explanation = torch._dynamo.explain(conv)(x, pos, edge_index)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(conv, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, pos, edge_index), conv(x, pos, edge_index))
