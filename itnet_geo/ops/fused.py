r"""The tiled kernel integral: O(N·C + tile) memory instead of O(E·hidden).

The edges are sorted by target (CSR) and cut into *tiles* of whole
neighbourhoods, so every per-target normalisation (``mean``, ``softmax``, ``max``)
is exact inside a tile. A custom :class:`torch.autograd.Function` runs the
tiles without recording a graph, keeps only its inputs and the per-target
output, and in backward recomputes each tile's kernel and back-propagates
through that tile alone. Peak memory is therefore the size of the node tensors
plus one tile's edge tensors, whatever the number of edges.

The per-edge maths (kernel, message, measure) is the function
:func:`tile_integral`, also usable on a whole edge set; the layer's reference
path computes the same quantity through :class:`~torch_geometric.nn.MessagePassing`
and is tested against it. :func:`set_compile` runs the sums over each
neighbourhood through :func:`torch.compile`.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch import Tensor

#: Measures understood by the kernel integral.
MEASURES = ("sum", "mean", "softmax", "max")

#: ``edge_fn(params, src_terms_j, dst_terms_i, rel_pos) -> (kappa, pos_emb)``
EdgeFn = Callable[
    [Sequence[Tensor], Tensor, Tensor, Tensor], tuple[Tensor, Optional[Tensor]]
]


def form_message(coef: Tensor, value: Tensor, contract: bool = False) -> Tensor:
    r"""Multiply kernel coefficients with gathered values.

    Args:
        coef (torch.Tensor): Kernel (or normalised kernel) per edge, :math:`(E, K)`.
        value (torch.Tensor): Values per edge, :math:`(E, K_v, D)` with
            :math:`K_v \in \{1, K\}`.
        contract (bool, optional): ``full`` kernels: :obj:`coef` holds a
            :math:`(C_{out}, C_{in})` matrix per edge and :obj:`value` is
            :math:`(E, C_{in}, 1)`; the matrix-vector product is returned as
            :math:`(E, C_{out}, 1)`. (default: :obj:`False`)
    """
    if contract:
        num_edges, c_in = value.size(0), value.size(1)
        mat = coef.view(num_edges, -1, c_in)
        return (mat * value.view(num_edges, 1, c_in)).sum(dim=-1, keepdim=True)
    return coef.unsqueeze(-1) * value


def contract_neighborhoods(
    coef: Tensor, value: Tensor, index: Optional[Tensor] = None
) -> Tensor:
    r"""Sum kernel-weighted values over dense neighbourhoods.

    .. math::
        o_{n,c,d} = \sum_k a_{n,k,c}\, v_{n,k,c,d}
        \qquad\text{or, with an index,}\qquad
        o_{n,c,d} = \sum_k a_{n,k,c}\, v_{\mathrm{index}_{n,k},c,d}

    Args:
        coef (torch.Tensor): Coefficients :math:`(n, k, K)`.
        value (torch.Tensor): Values :math:`(n, k, K_v, D)`, :math:`K_v \in
            \{1, K\}`; with :obj:`index`, the value table :math:`(N, K_v, D)`.
        index (torch.Tensor, optional): The row of :obj:`value` of each
            neighbour, :math:`(n, k)`. (default: :obj:`None`)

    Returns:
        :math:`(n, K, D)`.
    """
    if index is not None:
        value = value[index]
    n, k = coef.shape[:2]
    # Flat (E, ...) operands, as for edge lists: eagerly the faster layout.
    msg = form_message(coef.reshape(n * k, -1), value.flatten(0, 1))
    return msg.view((n, k) + msg.shape[1:]).sum(dim=1)


def scatter_neighborhoods(
    coef: Tensor, value: Tensor, row: Tensor, num_targets: int
) -> Tensor:
    r"""Sum kernel-weighted values per target over a list of edges.

    .. math::
        o_{i,c,d} = \sum_{e:\, \mathrm{row}_e = i} a_{e,c}\, v_{e,c,d}

    Args:
        coef (torch.Tensor): Coefficients per edge :math:`(E, K)`.
        value (torch.Tensor): Values per edge :math:`(E, K_v, D)`,
            :math:`K_v \in \{1, K\}`.
        row (torch.Tensor): Target of each edge, in :math:`[0, n)`.
        num_targets (int): :math:`n` (targets without edges get zeros).

    Returns:
        :math:`(n, K, D)`.
    """
    msg = coef.unsqueeze(-1) * value
    return msg.new_zeros((num_targets,) + msg.shape[1:]).index_add(0, row, msg)


def _contract(coef: Tensor, value: Tensor) -> Tensor:
    return contract_neighborhoods(coef, value)


def _gather_contract(coef: Tensor, value: Tensor, index: Tensor) -> Tensor:
    return contract_neighborhoods(coef, value, index)


#: The neighbourhood sums set_compile may compile: regular neighbourhoods
#: (dense blocks; with the values gathered before or inside) and edge lists.
#: One function each: torch.compile keeps a cache (of at most eight variants:
#: dtype, grad mode, ...) per function.
_SUMS: dict[str, Callable[..., Tensor]] = {
    "contract": _contract,
    "gather": _gather_contract,
    "scatter": scatter_neighborhoods,
}
# Their compiled versions, built once per process by set_compile and kept
# (torch.compile's caches belong to them), and whether they are in use.
_compiled: dict[str, Callable[..., Tensor]] = {}
_use_compiled = False


def _sums(name: str, device: torch.device) -> Callable[..., Tensor]:
    if _use_compiled and device.type == "cpu":
        return _compiled[name]
    return _SUMS[name]


def _probe(compiled: dict[str, Callable[..., Tensor]]) -> None:
    """Raise unless the compiled sums equal the eager ones (values, gradients)."""
    gen = torch.Generator().manual_seed(0)
    # Sizes all distinct, so that none is specialised to another's.
    coef = torch.randn(5, 3, 2, generator=gen, requires_grad=True)
    value = torch.randn(5, 3, 2, 7, generator=gen, requires_grad=True)
    table = torch.randn(11, 1, 7, generator=gen, requires_grad=True)
    index = torch.randint(0, 11, (5, 3), generator=gen)
    edge_coef = torch.randn(9, 2, generator=gen, requires_grad=True)
    edge_value = torch.randn(9, 2, 7, generator=gen, requires_grad=True)
    row = torch.tensor([0, 0, 2, 2, 2, 4, 4, 1, 0])  # targets 3 and 5 empty
    cases = [
        ("contract", (coef, value)),
        ("gather", (coef, table, index)),
        ("scatter", (edge_coef, edge_value, row, 6)),
    ]
    for name, args in cases:
        inputs = args[:2]
        out = compiled[name](*args)
        ref = _SUMS[name](*args)
        got = (out, *torch.autograd.grad(out.square().sum(), inputs))
        want = (ref, *torch.autograd.grad(ref.square().sum(), inputs))
        for a, b in zip(got, want, strict=True):
            if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"the compiled {name} sum differs from eager")


def set_compile(enabled: bool = True) -> bool:
    r"""Run the fused path's neighbourhood sums through :func:`torch.compile`.

    The fused path weighs the values of each target's neighbours by the kernel
    coefficients and sums them per target: over dense blocks for regular (e.g.
    k-NN) neighbourhoods (:func:`contract_neighborhoods`), by a scatter over
    the edge list otherwise (:func:`scatter_neighborhoods`); measures ``sum``,
    ``mean`` and ``softmax``. Eagerly the product is an :math:`E \times C`
    tensor written and read back, forward and backward; compiled, product and
    sum are one loop, and so is the gather of the values for regular
    neighbourhoods whose value table is no bigger than a tile. The first calls
    compile (seconds; PyTorch caches the result on disk); results equal the
    eager ones up to float rounding. CPU tensors only: other devices stay
    eager.

    With one thread the results repeat bit for bit. With several, the fused
    gather's backward adds into the value table's gradient in no fixed order
    (float rounding differs from run to run, as for PyTorch's atomic GPU
    kernels); under :func:`torch.use_deterministic_algorithms` the values are
    gathered before the compiled sum instead, which repeats.

    Compilation needs a working C++ compiler. Switching it on compiles and
    checks a small example first; if that fails, a warning says why and the
    fused path stays eager.

    Args:
        enabled (bool, optional): Switch compilation on or off.
            (default: :obj:`True`)

    Returns:
        Whether the compiled sums are now in use.
    """
    global _use_compiled
    if not enabled:
        _use_compiled = False
        return False
    if not _compiled:
        try:
            compiled = {
                name: torch.compile(fn, dynamic=True) for name, fn in _SUMS.items()
            }
            _probe(compiled)
        except Exception as exc:  # noqa: BLE001 - any failure means: stay eager
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            warnings.warn(
                f"torch.compile is unavailable here ({reason}); the fused kernel "
                "integral stays eager",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        _compiled.update(compiled)
    _use_compiled = True
    return True


def compile_enabled() -> bool:
    """Whether :func:`set_compile` switched the compiled sums on."""
    return _use_compiled


def cxx_compiler() -> Optional[str]:
    """The C++ compiler :func:`set_compile` needs.

    ``$CXX``, else the first of ``g++``, ``c++``, ``clang++`` on the path;
    :obj:`None` where there is none.
    """
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _log_weight(weight: Tensor) -> Tensor:
    tiny = torch.finfo(weight.dtype).tiny
    return weight.clamp_min(tiny).log()


def tile_integral(
    edge_fn: EdgeFn,
    params: Sequence[Tensor],
    src_g: Tensor,
    dst_t: Tensor,
    pos_src_g: Tensor,
    pos_dst_t: Tensor,
    value_g: Tensor,
    weight_t: Optional[Tensor],
    row: Tensor,
    num_targets: int,
    measure: str,
    contract: bool = False,
    value_pos: bool = False,
    degree: Optional[int] = None,
    value_index: Optional[Tensor] = None,
) -> Tensor:
    r"""The kernel integral over one tile of edges, with per-target outputs.

    Args:
        edge_fn: Computes ``(kappa, pos_emb)`` from gathered node terms.
        params: The parameters passed through to :obj:`edge_fn`.
        src_g: Source node terms gathered per edge, :math:`(E, S)`.
        dst_t: Target node terms of the tile's targets, :math:`(n, T)`.
        pos_src_g: Source positions gathered per edge, :math:`(E, D)`.
        pos_dst_t: Positions of the tile's targets, :math:`(n, D)`.
        value_g: Values gathered per edge, :math:`(E, K_v, C)`.
        weight_t: Quadrature weight per edge, :math:`(E,)`, or :obj:`None`.
        row: Local target index of each edge in :math:`[0, n)`, sorted.
        num_targets: :math:`n`.
        measure: One of :data:`MEASURES`.
        contract: Whether the kernel is a ``full`` matrix (see
            :func:`form_message`).
        value_pos: Add the kernel's positional embedding to the value.
        degree: If every target has exactly this many edges, the tile is
            evaluated as a dense :math:`(n, k)` block: broadcasts and reductions
            over a dimension instead of gathers and scatters.
        value_index: If given, :obj:`value_g` is the whole value table
            :math:`(N_s, K_v, C)` and this is the source of each edge,
            :math:`(E,)`: a dense tile then gathers inside
            :func:`contract_neighborhoods`.

    Returns:
        The integral per target, :math:`(n, K, C)`.
    """
    if degree is not None and degree > 0:
        return _dense_tile(
            edge_fn,
            params,
            src_g,
            dst_t,
            pos_src_g,
            pos_dst_t,
            value_g,
            weight_t,
            num_targets,
            degree,
            measure,
            contract,
            value_pos,
            value_index,
        )
    if value_index is not None:
        value_g = value_g.index_select(0, value_index)
    dst_g = dst_t.index_select(0, row)
    rel_pos = pos_src_g - pos_dst_t.index_select(0, row)
    kappa, pos_emb = edge_fn(params, src_g, dst_g, rel_pos)
    if value_pos:
        if pos_emb is None:
            raise ValueError("value_pos needs a kernel with a 'rel_pos' input")
        value_g = value_g + pos_emb.view(value_g.shape)

    if measure == "softmax":
        score = kappa if weight_t is None else kappa + _log_weight(weight_t)[:, None]
        index = row.view(-1, 1).expand_as(score)
        shift = torch.full(
            (num_targets, score.size(1)),
            float("-inf"),
            dtype=score.dtype,
            device=score.device,
        )
        shift = shift.scatter_reduce(0, index, score.detach(), "amax")
        expo = (score - shift.index_select(0, row)).exp()
        denom = torch.zeros_like(shift).index_add(0, row, expo)
        coef = expo / denom.index_select(0, row)
    elif measure == "max":
        msg = form_message(kappa, value_g, contract)
        out = msg.new_zeros((num_targets,) + msg.shape[1:])
        index = row.view(-1, 1, 1).expand_as(msg)
        return out.scatter_reduce(0, index, msg, "amax", include_self=False)
    else:
        coef = kappa if weight_t is None else kappa * weight_t[:, None]
    if contract:
        msg = form_message(coef, value_g, contract)
        out = msg.new_zeros((num_targets,) + msg.shape[1:]).index_add(0, row, msg)
    else:
        out = _sums("scatter", coef.device)(coef, value_g, row, num_targets)
    if measure == "mean":
        mass = torch.ones_like(row, dtype=out.dtype) if weight_t is None else weight_t
        total = out.new_zeros(num_targets).index_add(0, row, mass)
        out = out / total.clamp_min(torch.finfo(out.dtype).tiny).view(-1, 1, 1)
    return out


def _dense_tile(
    edge_fn: EdgeFn,
    params: Sequence[Tensor],
    src_g: Tensor,
    dst_t: Tensor,
    pos_src_g: Tensor,
    pos_dst_t: Tensor,
    value_g: Tensor,
    weight_t: Optional[Tensor],
    n: int,
    k: int,
    measure: str,
    contract: bool,
    value_pos: bool,
    value_index: Optional[Tensor] = None,
) -> Tensor:
    """:func:`tile_integral` for a tile whose targets all have k edges."""
    src_g = src_g.view(n, k, -1)
    rel_pos = pos_src_g.view(n, k, -1) - pos_dst_t.unsqueeze(1)
    kappa, pos_emb = edge_fn(params, src_g, dst_t.unsqueeze(1), rel_pos)
    kappa = kappa.expand(n, k, kappa.size(-1))
    # With value_index, value_g is the whole table: the contraction gathers.
    fuse_gather = value_index is not None and not (
        value_pos or contract or measure == "max"
    )
    if not fuse_gather:
        if value_index is not None:
            value_g = value_g.index_select(0, value_index)
        value_g = value_g.view((n, k) + value_g.shape[1:])
    if value_pos:
        if pos_emb is None:
            raise ValueError("value_pos needs a kernel with a 'rel_pos' input")
        value_g = value_g + pos_emb.view(value_g.shape)
    weight_t = None if weight_t is None else weight_t.view(n, k, 1)
    if measure == "softmax":
        score = kappa if weight_t is None else kappa + _log_weight(weight_t)
        coef = torch.softmax(score, dim=1)
    elif measure == "max" or weight_t is None:
        coef = kappa
    else:
        coef = kappa * weight_t
    if measure == "max" or contract:
        msg = form_message(coef.reshape(n * k, -1), value_g.flatten(0, 1), contract)
        msg = msg.view((n, k) + msg.shape[1:])
        if measure == "max":
            return msg.amax(dim=1)
        out = msg.sum(dim=1)
    elif fuse_gather:
        index = value_index.view(n, k)
        out = _sums("gather", coef.device)(coef, value_g, index)
    else:
        out = _sums("contract", coef.device)(coef, value_g)
    if measure == "mean":
        total = (
            out.new_full((n,), float(k)) if weight_t is None else weight_t.sum((1, 2))
        )
        out = out / total.clamp_min(torch.finfo(out.dtype).tiny).view(-1, 1, 1)
    return out


def _tiles(rowptr: list[int], tile_size: int) -> list[tuple[int, int, int, int]]:
    """Cut CSR targets into ranges of whole neighbourhoods of about tile_size edges."""
    tiles = []
    num_targets = len(rowptr) - 1
    t0 = 0
    ptr = torch.tensor(rowptr)
    while t0 < num_targets:
        limit = rowptr[t0] + tile_size
        t1 = int(torch.searchsorted(ptr, limit, right=True)) - 1
        t1 = min(max(t1, t0 + 1), num_targets)
        tiles.append((t0, t1, rowptr[t0], rowptr[t1]))
        t0 = t1
    return tiles


class _Plan:
    """Edges in CSR order and their tiles; shared by forward and backward."""

    def __init__(
        self,
        col: Tensor,
        row: Tensor,
        rowptr: list[int],
        tile_size: int,
        degree: Optional[int],
    ):
        self.col = col
        self.row = row
        self.degree = degree
        self.tiles = _tiles(rowptr, tile_size)


def _fuse_gather(plan: _Plan, value: Tensor) -> bool:
    # The compiled gather's backward writes a gradient for every value row
    # per tile: worth it while the table is no bigger than a tile's edges.
    # With several threads it adds into that table atomically, in no fixed
    # order, so it stands aside when deterministic algorithms are asked for.
    return (
        plan.degree is not None
        and _use_compiled
        and not torch.are_deterministic_algorithms_enabled()
        and value.device.type == "cpu"
        and bool(plan.tiles)
        and value.size(0) <= max(e1 - e0 for _, _, e0, e1 in plan.tiles)
    )


class _KernelIntegral(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        plan: _Plan,
        edge_fn: EdgeFn,
        options: tuple[str, bool, bool],
        src_terms: Tensor,
        dst_terms: Tensor,
        pos_src: Tensor,
        pos_dst: Tensor,
        value: Tensor,
        weight: Optional[Tensor],
        *params: Tensor,
    ) -> Tensor:
        measure, contract, value_pos = options
        outs = []
        tiles = plan.tiles or [(0, 0, 0, 0)]  # no targets: one empty tile
        fuse = _fuse_gather(plan, value)
        for t0, t1, e0, e1 in tiles:
            col = plan.col[e0:e1]
            outs.append(
                tile_integral(
                    edge_fn,
                    params,
                    src_terms.index_select(0, col),
                    dst_terms[t0:t1],
                    pos_src.index_select(0, col),
                    pos_dst[t0:t1],
                    value if fuse else value.index_select(0, col),
                    None if weight is None else weight[e0:e1],
                    plan.row[e0:e1] - t0,
                    t1 - t0,
                    measure,
                    contract,
                    value_pos,
                    plan.degree,
                    col if fuse else None,
                )
            )
        out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        ctx.plan = plan
        ctx.fuse = fuse  # backward gathers as forward did
        ctx.edge_fn = edge_fn
        ctx.options = options
        ctx.has_weight = weight is not None
        tensors = [src_terms, dst_terms, pos_src, pos_dst, value]
        tensors += [weight] if weight is not None else []
        ctx.save_for_backward(*tensors, *params)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        plan: _Plan = ctx.plan
        measure, contract, value_pos = ctx.options
        saved = ctx.saved_tensors
        src_terms, dst_terms, pos_src, pos_dst, value = saved[:5]
        weight = saved[5] if ctx.has_weight else None
        params = saved[6:] if ctx.has_weight else saved[5:]
        needs = ctx.needs_input_grad
        need_src, need_dst, need_ps, need_pd, need_val, need_w = needs[3:9]
        need_params = needs[9:]

        def zeros_if(flag: bool, like: Optional[Tensor]) -> Optional[Tensor]:
            return torch.zeros_like(like) if flag and like is not None else None

        g_src = zeros_if(need_src, src_terms)
        g_dst = zeros_if(need_dst, dst_terms)
        g_ps = zeros_if(need_ps, pos_src)
        g_pd = zeros_if(need_pd, pos_dst)
        g_val = zeros_if(need_val, value)
        g_w = zeros_if(need_w, weight)
        leaf_params = [
            p.detach().requires_grad_(flag)
            for p, flag in zip(params, need_params, strict=True)
        ]
        g_params: list[Optional[Tensor]] = [
            torch.zeros_like(p) if flag else None
            for p, flag in zip(params, need_params, strict=True)
        ]
        grad_out = grad_out.contiguous()
        fuse = ctx.fuse
        for t0, t1, e0, e1 in plan.tiles:
            if e0 == e1:
                continue
            col = plan.col[e0:e1]
            with torch.enable_grad():
                src_g = src_terms.index_select(0, col).requires_grad_(need_src)
                dst_t = dst_terms[t0:t1].detach().requires_grad_(need_dst)
                ps_g = pos_src.index_select(0, col).requires_grad_(need_ps)
                pd_t = pos_dst[t0:t1].detach().requires_grad_(need_pd)
                if fuse:  # the whole table: the tile gathers from it
                    val_g = value.detach().requires_grad_(need_val)
                else:
                    val_g = value.index_select(0, col).requires_grad_(need_val)
                w_t = None
                if weight is not None:
                    w_t = weight[e0:e1].detach().requires_grad_(bool(need_w))
                out = tile_integral(
                    ctx.edge_fn,
                    leaf_params,
                    src_g,
                    dst_t,
                    ps_g,
                    pd_t,
                    val_g,
                    w_t,
                    plan.row[e0:e1] - t0,
                    t1 - t0,
                    measure,
                    contract,
                    value_pos,
                    plan.degree,
                    col if fuse else None,
                )
                # (tile input, where its gradient goes)
                targets = [
                    (src_g, g_src, col),
                    (dst_t, g_dst, slice(t0, t1)),
                    (ps_g, g_ps, col),
                    (pd_t, g_pd, slice(t0, t1)),
                    (val_g, g_val, None if fuse else col),
                ]
                if w_t is not None:
                    targets.append((w_t, g_w, slice(e0, e1)))
                targets += [
                    (leaf, acc, None)
                    for leaf, acc in zip(leaf_params, g_params, strict=True)
                ]
                targets = [t for t in targets if t[0].requires_grad]
                if not targets or not out.requires_grad:
                    continue
                grads = torch.autograd.grad(
                    out, [t[0] for t in targets], grad_out[t0:t1], allow_unused=True
                )
            for (_, acc, where), grad in zip(targets, grads, strict=True):
                if grad is None:
                    continue
                if where is None:
                    acc += grad
                elif isinstance(where, slice):
                    acc[where] += grad
                else:
                    acc.index_add_(0, where, grad)
        return (None, None, None, g_src, g_dst, g_ps, g_pd, g_val, g_w, *g_params)


def csr_order(
    edge_index: Tensor, num_targets: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sort edges by target.

    Returns:
        The permutation applied to the edges, the sorted sources, the sorted
        targets and the CSR row pointer :math:`(N_t + 1,)`.
    """
    row = edge_index[1]
    perm = torch.argsort(row, stable=True)
    counts = torch.bincount(row, minlength=num_targets)
    rowptr = torch.zeros(num_targets + 1, dtype=torch.long, device=row.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    return perm, edge_index[0].index_select(0, perm), row.index_select(0, perm), rowptr


def kernel_integral(
    edge_fn: EdgeFn,
    params: Sequence[Tensor],
    src_terms: Tensor,
    dst_terms: Tensor,
    pos_src: Optional[Tensor],
    pos_dst: Optional[Tensor],
    value: Tensor,
    edge_index: Tensor,
    weight: Optional[Tensor] = None,
    measure: str = "sum",
    tile_size: int = 32768,
    contract: bool = False,
    value_pos: bool = False,
) -> Tensor:
    r"""Evaluate :math:`\sum_j w_{ij}\,\kappa(\cdot)\,v_j` per target, tile by tile.

    Args:
        edge_fn: ``edge_fn(params, src_terms_j, dst_terms_i, rel_pos)`` returning
            the kernel :math:`(E, K)` and the positional embedding (or
            :obj:`None`).
        params: Tensors :obj:`edge_fn` depends on (gradients flow to them).
        src_terms: Per-source node terms :math:`(N_s, S)`.
        dst_terms: Per-target node terms :math:`(N_t, T)`.
        pos_src: Source positions :math:`(N_s, D)`; :obj:`None` if the kernel
            takes no per-edge relative position (it then gets a zero-width one).
        pos_dst: Target positions :math:`(N_t, D)`, or :obj:`None`.
        value: Values :math:`(N_s, K_v, C)`.
        edge_index: :math:`(2, E)`, row 0 the source :math:`j`, row 1 the
            target :math:`i`, in any order.
        weight: Quadrature weight per edge :math:`(E,)`, optional.
        measure: One of :data:`MEASURES`.
        tile_size: Edges per tile (a tile always holds whole neighbourhoods).
        contract: ``full`` kernels (see :func:`form_message`).
        value_pos: Add the positional embedding to the value.

    Returns:
        :math:`(N_t, K, C)`.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
    if tile_size < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    num_targets = dst_terms.size(0)
    if pos_src is None or pos_dst is None:  # the kernel needs no per-edge positions
        pos_src = src_terms.new_zeros(src_terms.size(0), 0)
        pos_dst = dst_terms.new_zeros(num_targets, 0)
    perm, col, row, rowptr = csr_order(edge_index, num_targets)
    if weight is not None:
        weight = weight.index_select(0, perm)
    counts = rowptr.diff()
    degree = None
    if counts.numel() > 0 and bool((counts == counts[0]).all()) and int(counts[0]) > 0:
        degree = int(counts[0])  # regular neighbourhoods, e.g. a k-NN graph
    plan = _Plan(col, row, rowptr.tolist(), tile_size, degree)
    return _KernelIntegral.apply(
        plan,
        edge_fn,
        (measure, contract, value_pos),
        src_terms,
        dst_terms,
        pos_src,
        pos_dst,
        value,
        weight,
        *params,
    )


__all__ = [
    "kernel_integral",
    "tile_integral",
    "form_message",
    "contract_neighborhoods",
    "scatter_neighborhoods",
    "set_compile",
    "compile_enabled",
    "csr_order",
    "MEASURES",
]
