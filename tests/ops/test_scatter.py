import importlib

import pytest
import torch
from torch.testing import assert_close

from itnet_geo.ops import scatter, scatter_softmax, segment

# ``itnet_geo.ops.scatter`` the attribute is the function; this is the module.
scatter_module = importlib.import_module("itnet_geo.ops.scatter")

REDUCES = ["sum", "mean", "max", "min"]

# (src shape, dim, index, dim_size): segment 1 (and 5) are empty in most cases.
CASES = [
    ((6,), 0, [0, 2, 0, 3, 2, 2], None),
    ((6, 3), 0, [4, 0, 0, 2, 4, 3], 6),
    ((2, 5, 3), 1, [3, 0, 0, 3, 2], None),
    ((2, 3, 5), -1, [0, 0, 2, 1, 2], 4),
    ((0, 2), 0, [], 3),
]


def _reference(src, index, dim, dim_size, reduce):
    """Dense loop: one reduction per segment."""
    dim = dim % src.dim()
    parts = []
    for i in range(dim_size):
        rows = (index == i).nonzero().view(-1)
        sel = src.index_select(dim, rows)
        if rows.numel() == 0:
            shape = list(src.shape)
            shape[dim] = 1
            parts.append(src.new_zeros(shape))
            continue
        if reduce == "sum":
            part = sel.sum(dim, keepdim=True)
        elif reduce == "mean":
            part = sel.mean(dim, keepdim=True)
        elif reduce == "max":
            part = sel.amax(dim, keepdim=True)
        else:
            part = sel.amin(dim, keepdim=True)
        parts.append(part)
    return torch.cat(parts, dim)


def _softmax_reference(src, index, dim):
    dim = dim % src.dim()
    out = torch.zeros_like(src)
    for i in index.unique().tolist():
        rows = (index == i).nonzero().view(-1)
        part = torch.softmax(src.index_select(dim, rows), dim)
        out = out.index_copy(dim, rows, part)
    return out


def _inputs(case, dtype=torch.float64, seed=0):
    shape, dim, index, dim_size = case
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(shape, generator=gen, dtype=dtype).requires_grad_()
    index = torch.tensor(index, dtype=torch.long)
    if dim_size is None:
        dim_size = int(index.max()) + 1
    return src, index, dim, dim_size


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case", CASES)
def test_scatter_pure_matches_dense_loop(case, reduce):
    src, index, dim, dim_size = _inputs(case)
    out = scatter(src, index, dim, dim_size, reduce, backend="pure")
    ref = _reference(src, index, dim, dim_size, reduce)
    assert_close(out, ref)
    assert torch.isfinite(out).all()
    if src.numel() == 0:
        return
    grad = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, src, grad)
    (g_ref,) = torch.autograd.grad(ref, src, grad)
    assert_close(g_out, g_ref)


def test_scatter_empty_segments_are_zero():
    src = torch.tensor([-5.0, -3.0, 2.0])
    index = torch.tensor([0, 0, 2])
    for reduce in REDUCES:
        out = scatter(src, index, dim_size=4, reduce=reduce, backend="pure")
        assert out[1] == 0 and out[3] == 0, reduce
    assert scatter(src, index, reduce="max", backend="pure").tolist() == [-3, 0, 2]
    assert scatter(src, index, reduce="min", backend="pure").tolist() == [-5, 0, 2]


def test_scatter_add_alias_and_default_dim_size():
    src = torch.tensor([1.0, 2.0, 3.0])
    index = torch.tensor([1, 1, 3])
    out = scatter(src, index, reduce="add", backend="pure")
    assert out.tolist() == [0.0, 3.0, 0.0, 3.0]
    assert scatter(src[:0], index[:0], backend="pure").shape == (0,)


def test_scatter_integer_src():
    src = torch.tensor([3, 4, -7, 2])
    index = torch.tensor([0, 0, 1, 1])
    assert scatter(src, index, reduce="sum", backend="pure").tolist() == [7, -5]
    assert scatter(src, index, reduce="max", backend="pure").tolist() == [4, 2]
    assert scatter(src, index, reduce="min", backend="pure").tolist() == [3, -7]
    # torch-scatter's integer mean rounds down.
    assert scatter(src, index, reduce="mean", backend="pure").tolist() == [3, -3]


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case", CASES[:4])
def test_scatter_gradcheck(case, reduce):
    src, index, dim, dim_size = _inputs(case, seed=1)
    assert torch.autograd.gradcheck(
        lambda s: scatter(s, index, dim, dim_size, reduce, backend="pure"), (src,)
    )


@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_matches_scatter(reduce):
    gen = torch.Generator().manual_seed(2)
    src = torch.randn(9, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    ptr = torch.tensor([0, 3, 3, 4, 9])
    index = torch.repeat_interleave(torch.arange(4), ptr.diff())
    out = segment(src, ptr, reduce, backend="pure")
    ref = _reference(src, index, 0, 4, reduce)
    assert_close(out, ref)
    assert out[1].tolist() == [0.0, 0.0]
    grad = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, src, grad)
    (g_ref,) = torch.autograd.grad(ref, src, grad)
    assert_close(g_out, g_ref)
    assert torch.autograd.gradcheck(
        lambda s: segment(s, ptr, reduce, backend="pure"), (src,)
    )


def test_segment_partial_range_and_integers():
    src = torch.arange(8.0)
    ptr = torch.tensor([2, 4, 7])  # rows 0, 1 and 7 belong to no segment
    assert segment(src, ptr, backend="pure").tolist() == [5.0, 15.0]
    assert segment(src.long(), ptr, "max", backend="pure").tolist() == [3, 6]
    empty = segment(torch.zeros(0, 3), torch.tensor([0, 0]), "min", backend="pure")
    assert empty.shape == (1, 3) and (empty == 0).all()


@pytest.mark.parametrize("case", CASES)
def test_scatter_softmax_matches_reference(case):
    src, index, dim, dim_size = _inputs(case, seed=3)
    out = scatter_softmax(src, index, dim, dim_size, backend="pure")
    ref = _softmax_reference(src, index, dim)
    assert_close(out, ref)
    if src.numel() == 0:
        return
    sums = scatter(out, index, dim, dim_size, backend="pure")
    present = torch.zeros(dim_size, dtype=torch.bool)
    present[index] = True
    assert_close(
        sums.movedim(dim, 0)[present], torch.ones_like(sums.movedim(dim, 0)[present])
    )
    grad = torch.randn_like(out)
    (g_out,) = torch.autograd.grad(out, src, grad)
    (g_ref,) = torch.autograd.grad(ref, src, grad)
    assert_close(g_out, g_ref)
    assert torch.autograd.gradcheck(
        lambda s: scatter_softmax(s, index, dim, dim_size, backend="pure"), (src,)
    )


def test_scatter_softmax_is_stable_for_large_scores():
    src = torch.tensor([1000.0, 1000.0, -1000.0, 0.0])
    out = scatter_softmax(src, torch.tensor([0, 0, 1, 1]), backend="pure")
    assert_close(out, torch.tensor([0.5, 0.5, 0.0, 1.0]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: scatter(torch.ones(3), torch.zeros(2, dtype=torch.long)), r"\[3\]"),
        (
            lambda: scatter(torch.ones(3, 2), torch.zeros(3, 2, dtype=torch.long)),
            r"got \[3, 2\]",
        ),
        (lambda: scatter(torch.ones(3), torch.zeros(3)), "torch.long"),
        (lambda: scatter(torch.ones(3), torch.zeros(3, dtype=torch.long), 1), "dim"),
        (
            lambda: scatter(
                torch.ones(3), torch.zeros(3, dtype=torch.long), reduce="mul"
            ),
            "reduce",
        ),
        (
            lambda: scatter(
                torch.ones(3), torch.zeros(3, dtype=torch.long), backend="x"
            ),
            "backend",
        ),
        (lambda: segment(torch.ones(3), torch.tensor([0, 2, 1])), "non-decreasing"),
        (lambda: segment(torch.ones(3), torch.tensor([0, 4])), r"\[0, 3\]"),
        (lambda: segment(torch.ones(3), torch.tensor([[0, 3]])), "1-D"),
        (
            lambda: scatter_softmax(
                torch.ones(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)
            ),
            "floating",
        ),
    ],
)
def test_input_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_scatter_backend_requires_torch_scatter(monkeypatch):
    monkeypatch.setattr(scatter_module, "WITH_TORCH_SCATTER", False)
    index = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ImportError, match="torch-scatter"):
        scatter(torch.ones(3), index, backend="scatter")
    # "auto" falls back to the pure path.
    assert scatter(torch.ones(3), index).tolist() == [3.0]


# ---------------------------------------------------------------------------
# The compiled path gives the same values and gradients.
# ---------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("case", CASES)
def test_scatter_matches_torch_scatter(case, reduce):
    pytest.importorskip("torch_scatter")
    src, index, dim, dim_size = _inputs(case, seed=4)
    out = scatter(src, index, dim, dim_size, reduce, backend="pure")
    ref = scatter(src, index, dim, dim_size, reduce, backend="scatter")
    assert_close(out, ref)
    if src.numel() == 0:
        return
    grad = torch.randn_like(out)
    assert_close(
        torch.autograd.grad(out, src, grad)[0], torch.autograd.grad(ref, src, grad)[0]
    )


@pytest.mark.cluster
@pytest.mark.parametrize("reduce", REDUCES)
def test_segment_matches_torch_scatter(reduce):
    pytest.importorskip("torch_scatter")
    gen = torch.Generator().manual_seed(5)
    src = torch.randn(9, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    ptr = torch.tensor([0, 3, 3, 4, 9])
    out = segment(src, ptr, reduce, backend="pure")
    ref = segment(src, ptr, reduce, backend="scatter")
    assert_close(out, ref)
    grad = torch.randn_like(out)
    assert_close(
        torch.autograd.grad(out, src, grad)[0], torch.autograd.grad(ref, src, grad)[0]
    )


@pytest.mark.cluster
@pytest.mark.parametrize("case", CASES)
def test_scatter_softmax_matches_torch_scatter(case):
    pytest.importorskip("torch_scatter")
    src, index, dim, dim_size = _inputs(case, seed=6)
    out = scatter_softmax(src, index, dim, dim_size, backend="pure")
    ref = scatter_softmax(src, index, dim, dim_size, backend="scatter")
    assert_close(out, ref)
    if src.numel() == 0:
        return
    grad = torch.randn_like(out)
    assert_close(
        torch.autograd.grad(out, src, grad)[0], torch.autograd.grad(ref, src, grad)[0]
    )
