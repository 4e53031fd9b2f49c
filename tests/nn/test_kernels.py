import pytest
import torch
from torch import nn

from itnet_geo.nn.kernels import KernelMLP


def naive_kernel(kernel: KernelMLP, x_src, x_dst, pos_src, pos_dst, edge_index):
    """The kernel as a plain MLP on concatenated per-edge inputs."""
    j, i = edge_index
    blocks, weights = [], []
    first = kernel.hidden
    for name in kernel.inputs:
        if name == "rel_pos":
            blocks.append(pos_src[j] - pos_dst[i])
            weights.append(kernel.pos_term.weight)
        elif name == "x_i":
            blocks.append(x_dst[i])
            weights.append(kernel.lin_i.weight)
        elif name == "x_j":
            blocks.append(x_src[j])
            weights.append(kernel.lin_j.weight)
        elif name == "x_j - x_i":
            blocks.append(x_src[j] - x_dst[i])
            weights.append(kernel.lin_d.weight)
    out = None
    if blocks:
        lin = nn.Linear(sum(b.size(1) for b in blocks), first).to(x_src.dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.cat(weights, dim=1))
            lin.bias.copy_(kernel.bias)
        out = kernel.head(lin(torch.cat(blocks, dim=1)))
    if "qk" in kernel.inputs:
        q = kernel.lin_q(x_dst[i]).view(-1, kernel.out_dim, kernel.qk_dim)
        k = kernel.lin_k(x_src[j]).view(-1, kernel.out_dim, kernel.qk_dim)
        qk = (q * k).sum(-1) / kernel.qk_dim**0.5
        out = qk if out is None else out + qk
    return out


INPUTS = [
    ("rel_pos",),
    ("x_i",),
    ("x_j",),
    ("rel_pos", "x_i", "x_j"),
    ("x_i", "x_j - x_i"),
    ("rel_pos", "x_j", "x_j - x_i"),
    ("qk",),
    ("rel_pos", "x_j", "qk"),
]


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("fold_pos", [True, False])
def test_split_by_linearity_equals_naive_mlp(inputs, num_layers, fold_pos):
    torch.manual_seed(0)
    kernel = KernelMLP(5, 7, inputs=inputs, hidden=11, num_layers=num_layers).double()
    kernel.fold_pos = fold_pos
    x_src, x_dst = torch.randn(9, 5).double(), torch.randn(6, 5).double()
    pos_src, pos_dst = torch.randn(9, 3).double(), torch.randn(6, 3).double()
    edge_index = torch.stack([torch.randint(0, 9, (20,)), torch.randint(0, 6, (20,))])
    src, dst = kernel.node_terms(x_src, x_dst, pos_src, pos_dst)
    assert src.shape == (9, kernel.src_dim)
    assert dst.shape == (6, kernel.dst_dim)
    j, i = edge_index
    kappa, _ = kernel.edge_forward(src[j], dst[i], pos_src[j] - pos_dst[i])
    torch.testing.assert_close(
        kappa, naive_kernel(kernel, x_src, x_dst, pos_src, pos_dst, edge_index)
    )


def test_edge_forward_broadcasts_regular_layout():
    torch.manual_seed(0)
    kernel = KernelMLP(4, 6, inputs=("rel_pos", "x_i", "x_j", "qk")).double()
    kernel.fold_pos = False
    x, pos = torch.randn(10, 4).double(), torch.randn(10, 3).double()
    src, dst = kernel.node_terms(x, x, pos, pos)
    nbr = torch.randint(0, 10, (10, 3))
    rel = pos[nbr] - pos[:, None]
    dense, _ = kernel.edge_forward(src[nbr], dst[:, None], rel)
    flat, _ = kernel.edge_forward(
        src[nbr.flatten()], dst.repeat_interleave(3, 0), rel.flatten(0, 1)
    )
    torch.testing.assert_close(dense.flatten(0, 1), flat)


def test_folded_position_is_precise_far_from_origin():
    torch.manual_seed(0)
    kernel = KernelMLP(2, 4, inputs=("rel_pos",))
    pos = torch.randn(50, 3) + 1e5  # raw ModelNet-scale coordinates
    x = torch.randn(50, 2)
    edge_index = torch.stack([torch.randint(0, 50, (80,)), torch.randint(0, 50, (80,))])
    src, dst = kernel.node_terms(x, x, pos, pos)
    j, i = edge_index
    folded, _ = kernel.edge_forward(src[j], dst[i], pos[j] - pos[i])
    kernel.fold_pos = False
    src, dst = kernel.node_terms(x, x, pos, pos)
    direct, _ = kernel.edge_forward(src[j], dst[i], pos[j] - pos[i])
    torch.testing.assert_close(folded, direct, atol=1e-3, rtol=1e-3)


def test_custom_pos_nn_and_head():
    pos_nn = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8))
    head = nn.Sequential(nn.ReLU(), nn.Linear(8, 5))
    kernel = KernelMLP(
        4, 5, inputs=("rel_pos", "x_j"), hidden=8, pos_nn=pos_nn, head=head
    )
    assert not kernel.folds_pos
    x, pos = torch.randn(6, 4), torch.randn(6, 3)
    src, dst = kernel.node_terms(x, x, pos, pos)
    kappa, emb = kernel.edge_forward(src[:3], dst[3:], pos[:3] - pos[3:])
    assert kappa.shape == (3, 5)
    torch.testing.assert_close(emb, pos_nn(pos[:3] - pos[3:]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(inputs=()), "at least one"),
        (dict(inputs=("pos",)), "unknown kernel input"),
        (dict(inputs=("x_i", "x_i")), "duplicates"),
        (dict(num_layers=0), "num_layers"),
        (dict(act="swish2"), "unknown act"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelMLP(4, 5, **kwargs)


def test_x_j_minus_x_i_needs_equal_sizes():
    with pytest.raises(ValueError, match="equal source and target"):
        KernelMLP((4, 5), 3, inputs=("x_j - x_i",))
