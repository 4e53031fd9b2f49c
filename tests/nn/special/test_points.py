"""PyG point layers and their ITConv rebuilds: same outputs, same gradients."""

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch_geometric.nn import MLP, EdgeConv, NNConv, PointNetConv, PointTransformerConv
from torch_geometric.nn import Linear as PyGLinear

from itnet_geo.nn import ITConv
from itnet_geo.nn.special import (
    EdgeConvIT,
    NNConvIT,
    PointNetConvIT,
    PointTransformerConvIT,
    from_edge_conv,
    from_nn_conv,
    from_point_net_conv,
    from_point_transformer_conv,
)

DT = torch.float64
C_IN, C_OUT, D = 4, 6, 3
GRAPHS = ["knn", "random"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs: a second intra-op thread only adds contention on a busy CPU
    (about 20x slower here under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- helpers
def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randomise(module, seed=0):
    """Random parameters (non-zero biases) and BatchNorm statistics, float64."""
    module = module.to(DT)
    gen = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=gen, dtype=DT))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=gen, dtype=DT))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen, dtype=DT))
    return module


def _leaf(shape, seed):
    return torch.randn(shape, generator=_gen(seed), dtype=DT).requires_grad_()


def _edges(kind, n_src, n_dst, seed=0, k=4):
    """k-NN (every target has k sources, itself included when not bipartite) or
    random edges with degrees 0..k (empty neighbourhoods, self loops, repeats)."""
    gen = _gen(seed)
    if kind == "knn":
        pos_src = torch.randn(n_src, D, generator=gen, dtype=DT)
        pos_dst = pos_src[:n_dst] if n_src >= n_dst else None
        if pos_dst is None:
            pos_dst = torch.randn(n_dst, D, generator=gen, dtype=DT)
        src = torch.cdist(pos_dst, pos_src).topk(k, largest=False).indices
        dst = torch.arange(n_dst).repeat_interleave(k)
        return torch.stack([src.reshape(-1), dst])
    deg = torch.randint(0, k + 1, (n_dst,), generator=gen)
    dst = torch.arange(n_dst).repeat_interleave(deg)
    src = torch.randint(n_src, (dst.numel(),), generator=gen)
    return torch.stack([src, dst])


def _pairs(pyg_params, our_params):
    """Gradient pairs of parameters that map one to one."""
    pyg_params, our_params = list(pyg_params), list(our_params)
    pairs = zip(pyg_params, our_params, strict=True)
    return [(lambda a=a: a.grad, lambda b=b: b.grad) for a, b in pairs]


def _assert_same(pyg, ours, make_inputs, grads=(), tiles=(None, 7)):
    """Outputs, input gradients and mapped parameter gradients are equal, on the
    reference path and on the fused path (``conv.tile_size``).

    ``make_inputs(ours)`` returns fresh (arguments, leaf tensors); ``ours`` says
    which layer will be called."""

    def run(layer):
        layer.zero_grad(set_to_none=True)
        args, leaves = make_inputs(ours=layer is ours)
        out = layer(*args)
        out.backward(torch.randn(out.shape, generator=_gen(99), dtype=out.dtype))
        return out.detach(), [leaf.grad for leaf in leaves]

    expected, expected_grads = run(pyg)
    assert expected.abs().sum() > 0
    expected_params = [pyg_grad() for pyg_grad, _ in grads]
    assert all(g is not None for g in expected_grads + expected_params)
    for tile in tiles:
        ours.conv.tile_size = tile
        out, leaf_grads = run(ours)
        assert_close(out, expected)
        for got, want in zip(leaf_grads, expected_grads, strict=True):
            assert_close(got, want)
        for (_, our_grad), want in zip(grads, expected_params, strict=True):
            assert_close(our_grad(), want)
    ours.conv.tile_size = None


class _Neg(nn.Module):
    def forward(self, x):
        return -x


# ------------------------------------------------------------------- PointNet
def _local_nn(kind, c_in=C_IN, out=C_OUT):
    """Networks on [x_j, p_j - p_i] and whether they begin with a linear layer."""
    w = c_in + D
    nets = {
        "sequential": lambda: nn.Sequential(
            nn.Linear(w, 8), nn.ReLU(), nn.Linear(8, out)
        ),
        "pyg_linear_first": lambda: nn.Sequential(PyGLinear(w, 8), nn.Tanh()),
        "linear": lambda: nn.Linear(w, out),
        "mlp": lambda: MLP([w, 8, out], norm=None),
        "mlp_batch_norm": lambda: MLP(
            [w, 8, 8, out], norm="batch_norm", act="tanh", act_first=True
        ),
        "mlp_layer_norm": lambda: MLP(
            [w, 8, out],
            norm="layer_norm",
            norm_kwargs={"mode": "node"},
            plain_last=False,
        ),
        "nested": lambda: nn.Sequential(
            MLP([w, 8, 8], norm=None), nn.ReLU(), nn.Linear(8, out)
        ),
        "nonlinear_first": lambda: nn.Sequential(nn.Tanh(), nn.Linear(w, out)),
        "none": lambda: None,
    }
    return nets[kind](), kind not in ("nonlinear_first", "none")


def _first_linear_pairs(pyg_net, kernel_nn, blocks, split):
    """Gradient pairs of a network split into the kernel's first-layer blocks."""
    if pyg_net is None:
        return []
    params = list(pyg_net.parameters())
    if not split:  # identity first layer, the whole network is the head
        return _pairs(params, kernel_nn.head.parameters())
    weight, bias = params[:2]

    def ours():
        return torch.cat([getattr(kernel_nn, b).weight.grad for b in blocks], dim=1)

    head = [] if kernel_nn.head is None else list(kernel_nn.head.parameters())
    return [
        (lambda: weight.grad, ours),
        (lambda: bias.grad, lambda: kernel_nn.bias.grad),
    ] + _pairs(params[2:], head)


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize(
    "kind",
    [
        "sequential",
        "pyg_linear_first",
        "linear",
        "mlp",
        "mlp_batch_norm",
        "mlp_layer_norm",
        "nested",
        "nonlinear_first",
        "none",
    ],
)
def test_point_net_conv(kind, graph):
    local_nn, split = _local_nn(kind)
    global_nn = nn.Sequential(nn.ReLU(), nn.Linear(C_OUT, 5)) if kind == "mlp" else None
    pyg = _randomise(PointNetConv(local_nn, global_nn)).eval()
    ours = from_point_net_conv(pyg, in_channels=None if split else C_IN).eval()
    if local_nn is None:  # no PyG parameter to take the dtype from
        assert next(ours.parameters()).dtype == torch.get_default_dtype()
        ours = ours.to(DT)
    assert isinstance(ours, PointNetConvIT) and isinstance(ours.conv, ITConv)
    assert ours.conv.kernel_inputs == ("x_j", "rel_pos")
    assert (ours.conv.value, ours.conv.measure) == ("ones", "max")
    n = 12
    edge_index = _edges(graph, n, n, seed=1)

    def make_inputs(ours=False):
        x, pos = _leaf((n, C_IN), 2), _leaf((n, D), 3)
        return (x, pos, edge_index), [x, pos]

    kernel_nn = ours.conv.kernel_nn
    grads = _first_linear_pairs(local_nn, kernel_nn, ["lin_j", "pos_term"], split)
    if global_nn is not None:
        grads += _pairs(global_nn.parameters(), ours.global_nn.parameters())
    _assert_same(pyg, ours, make_inputs, grads)


@pytest.mark.parametrize("n_src,n_dst", [(9, 6), (5, 8)])
def test_point_net_conv_bipartite(n_src, n_dst):
    """Self loops on the smaller side only; targets past it may have no edge."""
    local_nn, _ = _local_nn("sequential")
    pyg = _randomise(PointNetConv(local_nn))
    ours = from_point_net_conv(pyg)
    edge_index = _edges("random", n_src, n_dst, seed=4)

    def make_inputs(ours=False):
        x_src, x_dst = _leaf((n_src, C_IN), 5), _leaf((n_dst, C_IN), 6)
        pos_src, pos_dst = _leaf((n_src, D), 7), _leaf((n_dst, D), 8)
        args = ((x_src, x_dst), (pos_src, pos_dst), edge_index)
        return args, [x_src, pos_src, pos_dst]

    _assert_same(pyg, ours, make_inputs)


def test_point_net_conv_without_features():
    local_nn, _ = _local_nn("sequential", c_in=0)
    pyg = _randomise(PointNetConv(local_nn))
    ours = from_point_net_conv(pyg)
    assert ours.conv.kernel_inputs == ("rel_pos",)
    edge_index = _edges("knn", 10, 10, seed=9)

    def make_inputs(ours=False):
        pos = _leaf((10, D), 10)
        return (None, pos, edge_index), [pos]

    grads = _first_linear_pairs(local_nn, ours.conv.kernel_nn, ["pos_term"], True)
    _assert_same(pyg, ours, make_inputs, grads)


@pytest.mark.parametrize("aggr,measure", [("add", "sum"), ("mean", "mean")])
def test_point_net_conv_aggregations(aggr, measure):
    local_nn, _ = _local_nn("mlp")
    pyg = _randomise(PointNetConv(local_nn, add_self_loops=False, aggr=aggr))
    ours = from_point_net_conv(pyg)
    assert ours.conv.measure == measure
    edge_index = _edges("random", 11, 11, seed=11)

    def make_inputs(ours=False):
        x, pos = _leaf((11, C_IN), 12), _leaf((11, D), 13)
        return (x, pos, edge_index), [x, pos]

    _assert_same(pyg, ours, make_inputs)


def test_batch_norm_training_mode_reference_path_only():
    """Train-mode BatchNorm: exact (statistics over all edges, running statistics
    too) on the reference path; the fused path would use per-tile statistics and
    is refused, as is train-mode dropout."""
    local_nn, _ = _local_nn("mlp_batch_norm")
    pyg = _randomise(PointNetConv(local_nn)).train()
    ours = from_point_net_conv(pyg)
    assert ours.training
    edge_index = _edges("random", 10, 10, seed=14)

    def make_inputs(ours=False):
        x, pos = _leaf((10, C_IN), 15), _leaf((10, D), 16)
        return (x, pos, edge_index), [x, pos]

    _assert_same(pyg, ours, make_inputs, tiles=(None,))
    ours_buffers = dict(ours.conv.kernel_nn.head.named_buffers())
    checked = 0
    for name, buf in pyg.local_nn.named_buffers():
        if "running" in name:
            assert_close(ours_buffers["module." + name], buf)
            checked += 1
    assert checked == 4
    ours.conv.tile_size = 7
    args, _ = make_inputs()
    with pytest.raises(ValueError, match="BatchNorm in training mode"):
        ours(*args)
    ours.eval()
    assert ours(*args).shape == (10, C_OUT)

    dropout = from_point_net_conv(PointNetConv(MLP([C_IN + D, 8, C_OUT], dropout=0.5)))
    dropout.conv.tile_size = 7
    with pytest.raises(ValueError, match="dropout"):
        dropout(*args)


# ------------------------------------------------------------------- EdgeConv
@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("kind", ["sequential", "mlp_batch_norm", "nonlinear_first"])
@pytest.mark.parametrize(
    "aggr,measure", [("max", "max"), ("add", "sum"), ("mean", "mean")]
)
def test_edge_conv(aggr, measure, kind, graph):
    net = {
        "sequential": lambda: nn.Sequential(
            nn.Linear(2 * C_IN, 8), nn.ReLU(), nn.Linear(8, C_OUT)
        ),
        "mlp_batch_norm": lambda: MLP([2 * C_IN, 8, C_OUT], act="tanh"),
        "nonlinear_first": lambda: nn.Sequential(nn.Tanh(), nn.Linear(2 * C_IN, C_OUT)),
    }[kind]()
    split = kind != "nonlinear_first"
    pyg = _randomise(EdgeConv(net, aggr=aggr)).eval()
    ours = from_edge_conv(pyg, in_channels=None if split else C_IN).eval()
    assert isinstance(ours, EdgeConvIT)
    assert ours.conv.kernel_inputs == ("x_i", "x_j - x_i")
    assert (ours.conv.value, ours.conv.measure) == ("ones", measure)
    edge_index = _edges(graph, 12, 12, seed=17)

    def make_inputs(ours=False):
        x = _leaf((12, C_IN), 18)
        return (x, edge_index), [x]

    grads = _first_linear_pairs(net, ours.conv.kernel_nn, ["lin_i", "lin_d"], split)
    _assert_same(pyg, ours, make_inputs, grads)


def test_edge_conv_bipartite():
    net = nn.Sequential(nn.Linear(2 * C_IN, 8), nn.ReLU(), nn.Linear(8, C_OUT))
    pyg = _randomise(EdgeConv(net))
    ours = from_edge_conv(pyg)
    edge_index = _edges("random", 9, 6, seed=19)

    def make_inputs(ours=False):
        x_src, x_dst = _leaf((9, C_IN), 20), _leaf((6, C_IN), 21)
        return ((x_src, x_dst), edge_index), [x_src, x_dst]

    _assert_same(pyg, ours, make_inputs)


# ---------------------------------------------------------- PointTransformer
def _attn_nn(kind):
    return {
        "none": None,
        "channel": nn.Sequential(nn.Linear(C_OUT, 8), nn.ReLU(), nn.Linear(8, C_OUT)),
        "scalar": nn.Sequential(nn.Linear(C_OUT, 8), nn.Tanh(), nn.Linear(8, 1)),
    }[kind]


def _transformer_pairs(pyg, ours):
    kernel_nn = ours.conv.kernel_nn
    grads = [
        (lambda: pyg.lin_dst.weight.grad, lambda: kernel_nn.lin_i.weight.grad),
        (lambda: pyg.lin_src.weight.grad, lambda: -kernel_nn.lin_j.weight.grad),
        (lambda: pyg.lin.weight.grad, lambda: ours.conv.lin_value.weight.grad),
    ]
    grads += _pairs(pyg.pos_nn.parameters(), kernel_nn.pos_term.parameters())
    if pyg.attn_nn is not None:
        grads += _pairs(pyg.attn_nn.parameters(), kernel_nn.head.parameters())
    return grads


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("attn", ["none", "channel", "scalar"])
def test_point_transformer_conv(attn, graph):
    pyg = _randomise(PointTransformerConv(C_IN, C_OUT, attn_nn=_attn_nn(attn)))
    ours = from_point_transformer_conv(pyg)
    assert isinstance(ours, PointTransformerConvIT)
    conv = ours.conv
    assert conv.kernel_inputs == ("rel_pos", "x_i", "x_j")
    assert (conv.measure, conv.value, conv.value_pos) == ("softmax", "linear", "kernel")
    assert conv.kernel == ("heads" if attn == "scalar" else "channel")
    edge_index = _edges(graph, 12, 12, seed=22)

    def make_inputs(ours=False):
        x, pos = _leaf((12, C_IN), 23), _leaf((12, D), 24)
        return (x, pos, edge_index), [x, pos]

    _assert_same(pyg, ours, make_inputs, _transformer_pairs(pyg, ours))


@pytest.mark.parametrize("n_src,n_dst", [(9, 6), (5, 8)])
def test_point_transformer_conv_bipartite(n_src, n_dst):
    pos_nn = MLP([D, 8, C_OUT], norm=None)
    pyg = _randomise(PointTransformerConv((C_IN, 5), C_OUT, pos_nn=pos_nn))
    ours = from_point_transformer_conv(pyg)
    edge_index = _edges("random", n_src, n_dst, seed=25)

    def make_inputs(ours=False):
        x_src, x_dst = _leaf((n_src, C_IN), 26), _leaf((n_dst, 5), 27)
        pos_src, pos_dst = _leaf((n_src, D), 28), _leaf((n_dst, D), 29)
        args = ((x_src, x_dst), (pos_src, pos_dst), edge_index)
        return args, [x_src, x_dst, pos_src, pos_dst]

    _assert_same(pyg, ours, make_inputs, _transformer_pairs(pyg, ours))


def test_point_transformer_conv_mean():
    attn_nn = _attn_nn("channel")
    pyg = _randomise(PointTransformerConv(C_IN, C_OUT, attn_nn=attn_nn, aggr="mean"))
    ours = from_point_transformer_conv(pyg)
    edge_index = _edges("random", 10, 10, seed=30)

    def make_inputs(ours=False):
        x, pos = _leaf((10, C_IN), 31), _leaf((10, D), 32)
        return (x, pos, edge_index), [x, pos]

    _assert_same(pyg, ours, make_inputs, _transformer_pairs(pyg, ours))


# ---------------------------------------------------------------------- NNConv
def _edge_nn(kind, c_in=C_IN, out=C_OUT):
    return {
        "sequential": lambda: nn.Sequential(
            nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, c_in * out)
        ),
        "linear": lambda: nn.Linear(D, c_in * out),
        "nonlinear_first": lambda: nn.Sequential(nn.Tanh(), nn.Linear(D, c_in * out)),
    }[kind]()


def _nn_conv_pairs(pyg, ours, split):
    kernel_nn = ours.conv.kernel_nn
    params = list(pyg.nn.parameters())
    if split:
        grads = [
            (lambda: params[0].grad, lambda: kernel_nn.pos_term.weight.grad),
            (lambda: params[1].grad, lambda: kernel_nn.bias.grad),
        ] + _pairs(params[2:], kernel_nn.head.parameters())
    else:
        grads = _pairs(params, kernel_nn.pos_term.parameters())
    if pyg.root_weight:
        grads += _pairs([pyg.lin.weight], [ours.root.weight])
    if pyg.bias is not None:
        grads += _pairs([pyg.bias], [ours.conv.bias])
    return grads


@pytest.mark.parametrize("mode", ["edge_attr", "pos"])
@pytest.mark.parametrize("kind", ["sequential", "linear", "nonlinear_first"])
@pytest.mark.parametrize(
    "aggr,measure", [("add", "sum"), ("mean", "mean"), ("max", "max")]
)
def test_nn_conv(aggr, measure, kind, mode):
    split = kind != "nonlinear_first"
    pyg = _randomise(NNConv(C_IN, C_OUT, _edge_nn(kind), aggr=aggr))
    ours = from_nn_conv(pyg, pos_dim=None if split else D)
    assert isinstance(ours, NNConvIT)
    conv = ours.conv
    assert (conv.kernel_inputs, conv.kernel, conv.measure) == (
        ("rel_pos",),
        "full",
        measure,
    )
    edge_index = _edges("random" if mode == "edge_attr" else "knn", 11, 11, seed=33)
    src, dst = edge_index

    def make_inputs(ours=False):
        x = _leaf((11, C_IN), 34)
        if mode == "edge_attr":  # any edge attributes, not only p_j - p_i
            edge_attr = _leaf((src.numel(), D), 35)
            return (x, edge_index, edge_attr), [x, edge_attr]
        pos = _leaf((11, D), 36)
        if ours:  # the native form: the ITConv on the graph, p_j - p_i inside
            return (x, edge_index, None, None, pos), [x, pos]
        return (x, edge_index, pos[src] - pos[dst]), [x, pos]

    _assert_same(pyg, ours, make_inputs, _nn_conv_pairs(pyg, ours, split))


@pytest.mark.parametrize("root_weight,bias", [(True, True), (False, False)])
def test_nn_conv_bipartite(root_weight, bias):
    pyg = _randomise(
        NNConv(
            (C_IN, 5), C_OUT, _edge_nn("sequential"), root_weight=root_weight, bias=bias
        )
    )
    ours = from_nn_conv(pyg)
    edge_index = _edges("random", 9, 6, seed=37)
    src, dst = edge_index

    def make_inputs(ours=False):
        x_src, x_dst = _leaf((9, C_IN), 38), _leaf((6, 5), 39)
        pos_src, pos_dst = _leaf((9, D), 40), _leaf((6, D), 41)
        edge_attr = pos_src[src] - pos_dst[dst]
        leaves = [x_src, pos_src, pos_dst] + ([x_dst] if root_weight else [])
        return ((x_src, x_dst), edge_index, edge_attr), leaves

    _assert_same(pyg, ours, make_inputs, _nn_conv_pairs(pyg, ours, True))
    # Target features None: no root term, number of targets from size.
    (x_pair, ei, edge_attr), _ = make_inputs()
    x_none = (x_pair[0], None)
    expected = pyg(x_none, ei, edge_attr, size=(9, 6))
    assert_close(ours(x_none, ei, edge_attr, size=(9, 6)), expected)
    # Positions instead of edge attributes: the ITConv on the graph itself.
    pos_pair = (_leaf((9, D), 40), _leaf((6, D), 41))
    assert_close(ours(x_pair, ei, pos=pos_pair), pyg(x_pair, ei, edge_attr))


# ------------------------------------------------- settings out of reach
@pytest.mark.parametrize("aggr", ["min", "mul", "std", ["max", "mean"]])
def test_unreachable_aggregation_and_nearest_exact_form(aggr):
    """No ITConv measure aggregates by min/mul/std or several aggregators; min is
    reached exactly as the negated max layer of the negated network."""
    net = nn.Sequential(nn.Linear(2 * C_IN, 8), nn.ReLU(), nn.Linear(8, C_OUT))
    pyg = _randomise(EdgeConv(net, aggr=aggr))
    with pytest.raises(ValueError, match="not exactly reachable"):
        from_edge_conv(pyg)
    if aggr != "min":
        return
    negated = EdgeConv(nn.Sequential(copy.deepcopy(net), _Neg()), aggr="max").to(DT)
    negated.nn[0].load_state_dict(net.state_dict())  # EdgeConv reset its nn
    ours = from_edge_conv(negated)
    x, edge_index = _leaf((10, C_IN), 42), _edges("random", 10, 10, seed=43)
    for tile in (None, 7):
        ours.conv.tile_size = tile
        assert_close(-ours(x, edge_index), pyg(x, edge_index))


def test_point_transformer_max_is_unreachable():
    """The maximum of softmax-normalised messages is no ITConv measure; the
    nearest exact form is PyG's default aggr='add'."""
    pyg_max = _randomise(PointTransformerConv(C_IN, C_OUT, aggr="max"))
    with pytest.raises(ValueError, match="not exactly reachable"):
        from_point_transformer_conv(pyg_max)
    pyg_add = PointTransformerConv(C_IN, C_OUT).to(DT)
    pyg_add.load_state_dict(pyg_max.state_dict())
    ours = from_point_transformer_conv(pyg_add)
    x, pos = _leaf((10, C_IN), 44), _leaf((10, D), 45)
    edge_index = _edges("random", 10, 10, seed=46)
    assert_close(ours(x, pos, edge_index), pyg_add(x, pos, edge_index))


def test_target_to_source_flow_is_the_flipped_graph():
    net = nn.Sequential(nn.Linear(2 * C_IN, 8), nn.ReLU(), nn.Linear(8, C_OUT))
    pyg = _randomise(EdgeConv(net, flow="target_to_source"))
    with pytest.raises(ValueError, match="flip"):
        from_edge_conv(pyg)
    default_flow = EdgeConv(copy.deepcopy(net)).to(DT)
    default_flow.load_state_dict(pyg.state_dict())
    ours = from_edge_conv(default_flow)
    x, edge_index = _leaf((10, C_IN), 47), _edges("random", 10, 10, seed=48)
    assert_close(ours(x, edge_index.flip(0)), pyg(x, edge_index))


# ------------------------------------------------------------ construction
def _all_layers():
    return [
        (PointNetConv(_local_nn("mlp_batch_norm")[0]), from_point_net_conv),
        (EdgeConv(MLP([2 * C_IN, 8, C_OUT])), from_edge_conv),
        (
            PointTransformerConv(C_IN, C_OUT, attn_nn=_attn_nn("channel")),
            from_point_transformer_conv,
        ),
        (NNConv(C_IN, C_OUT, _edge_nn("sequential")), from_nn_conv),
    ]


@pytest.mark.parametrize("index", range(4))
def test_weights_are_copied_after_construction(index):
    """ITConv's __init__ resets its parameters (and its kernel head's); the
    converter copies the weights afterwards and leaves the PyG layer untouched,
    sharing no storage with it."""
    pyg, convert = _all_layers()[index]
    pyg = _randomise(pyg, seed=index).eval()
    before = {k: v.clone() for k, v in pyg.state_dict().items()}
    torch.manual_seed(1234)  # whatever ITConv draws in reset_parameters
    ours = convert(pyg)
    after = pyg.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    pyg_ptrs = {p.data_ptr() for p in pyg.state_dict().values()}
    assert not pyg_ptrs & {p.data_ptr() for p in ours.state_dict().values()}
    assert all(p.dtype == DT for p in ours.parameters())
    assert not ours.training


def test_lazy_and_sparse_inputs_are_refused():
    with pytest.raises(ValueError, match="lazily initialised"):
        from_edge_conv(EdgeConv(MLP([-1, 8, C_OUT])))
    ours = from_edge_conv(EdgeConv(MLP([2 * C_IN, 8, C_OUT])))
    edge_index = _edges("random", 5, 5)
    adj = torch.sparse_coo_tensor(
        edge_index, torch.ones(edge_index.size(1)), (5, 5), check_invariants=True
    )
    with pytest.raises(TypeError, match="edge_index"):
        ours(torch.randn(5, C_IN), adj)


def test_design_name_from_point_transformer_is_the_same_function():
    from itnet_geo.nn import special

    assert special.from_point_transformer is special.from_point_transformer_conv
