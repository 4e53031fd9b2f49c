import pytest
import torch
from torch import nn
from torch.testing import assert_close

from itnet_geo.nn import ImageIT, KernelMLP, SequenceIT, special
from itnet_geo.nn.special import (
    DiagonalSSM,
    MinGRU,
    MinLSTM,
    ScanIT,
    SelectiveScan,
    from_conv1d,
    from_conv2d,
    from_diagonal_ssm,
    from_gru,
    from_lstm,
    from_mingru,
    from_minlstm,
    from_multihead_attention,
    from_selective_scan,
)


def _x(*shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _randomize(module, seed=0, scale=0.5):
    """Random weights (not the module's initialisation), in float64."""
    gen = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def assert_same_function(ref, new, *inputs, out=lambda y: y):
    """Equal outputs and equal gradients w.r.t. every floating input."""
    inputs = [
        t.detach().clone().requires_grad_() if t.is_floating_point() else t
        for t in inputs
    ]
    y_ref, y_new = out(ref(*inputs)), out(new(*inputs))
    assert_close(y_new, y_ref)
    probe = _x(*y_ref.shape, seed=7)
    wrt = [t for t in inputs if t.requires_grad]
    g_ref = torch.autograd.grad((y_ref * probe).sum(), wrt)
    g_new = torch.autograd.grad((y_new * probe).sum(), wrt)
    for a, b in zip(g_new, g_ref, strict=True):
        assert_close(a, b)


def test_exports():
    for name in ("from_conv1d", "from_multihead_attention", "from_mingru", "MinLSTM"):
        assert name in special.__all__


# ---------------------------------------------------------------- convolution
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, padding=1),
        dict(kernel_size=4, padding="same"),
        dict(kernel_size=3, padding="valid", stride=2),
        dict(kernel_size=3, padding=2, dilation=2, stride=3),
        dict(kernel_size=2, groups=2, bias=False),
        dict(kernel_size=5, padding=4, groups=2, stride=2),
    ],
)
def test_conv1d(kwargs):
    torch.manual_seed(0)
    conv = _randomize(nn.Conv1d(4, 6, **kwargs))
    it = from_conv1d(conv, tile_size=5)
    assert isinstance(it.transform, SequenceIT)
    assert type(it.transform.kernel_nn) is KernelMLP
    assert_same_function(conv, it, _x(2, 4, 13))
    assert_same_function(conv, it, _x(4, 13))  # unbatched


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, padding=1),
        dict(kernel_size=(3, 2), padding="same"),
        dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
        dict(kernel_size=3, groups=2, padding=1, stride=2, bias=False),
        dict(kernel_size=1, groups=4),
    ],
)
def test_conv2d(kwargs):
    torch.manual_seed(0)
    conv = _randomize(nn.Conv2d(4, 6 if kwargs.get("groups") != 4 else 8, **kwargs))
    it = from_conv2d(conv, tile_size=7)
    assert isinstance(it, ImageIT) and type(it.kernel_nn) is KernelMLP
    assert_same_function(conv, it, _x(2, 4, 7, 6))
    assert_same_function(conv, it, _x(4, 7, 6))


def test_conv_padding_mode_is_refused():
    with pytest.raises(ValueError, match="zeros"):
        from_conv2d(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))


# ------------------------------------------------------------------ attention
def _mha(seed=0, **kwargs):
    torch.manual_seed(seed)
    return _randomize(nn.MultiheadAttention(8, 2, **kwargs), seed).eval()


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("source_tile", [None, 3])
def test_self_attention(batch_first, source_tile):
    mha = _mha(batch_first=batch_first)
    it = from_multihead_attention(mha, tile_size=3, source_tile=source_tile)
    assert type(it.transform.kernel_nn) is KernelMLP
    assert it.transform.kernel_inputs == ("qk",)
    x = _x(2, 7, 8) if batch_first else _x(7, 2, 8)
    assert_same_function(lambda t: mha(t, t, t)[0], lambda t: it(t, t, t)[0], x)
    ref_w, new_w = mha(x, x, x)[1], it(x, x, x)[1]
    assert_close(new_w, ref_w)
    ref_w = mha(x, x, x, average_attn_weights=False)[1]
    assert_close(it(x, x, x, average_attn_weights=False)[1], ref_w)
    assert it(x, x, x, need_weights=False)[1] is None


def test_cross_attention_kdim_vdim_no_bias():
    mha = _mha(batch_first=True, kdim=5, vdim=3, bias=False)
    it = from_multihead_attention(mha, tile_size=2)
    q, k, v = _x(2, 4, 8), _x(2, 6, 5, seed=2), _x(2, 6, 3, seed=3)
    assert_same_function(lambda *a: mha(*a)[0], lambda *a: it(*a)[0], q, k, v)
    assert_close(it(q, k, v)[1], mha(q, k, v)[1])


@pytest.mark.parametrize("need_weights", [False, True])
def test_causal_attention(need_weights):
    mha = _mha(batch_first=True)
    it = from_multihead_attention(mha, tile_size=3, source_tile=2)
    x = _x(2, 7, 8)
    causal = nn.Transformer.generate_square_subsequent_mask(7, dtype=torch.float64)
    bool_causal = torch.ones(7, 7, dtype=torch.bool).triu(1)
    for mask, is_causal in [(causal, True), (bool_causal, True), (causal, False)]:

        def call(m, t, mask=mask, is_causal=is_causal):
            return m(
                t, t, t, attn_mask=mask, is_causal=is_causal, need_weights=need_weights
            )

        assert_same_function(lambda t: call(mha, t)[0], lambda t: call(it, t)[0], x)
        if need_weights:
            assert_close(call(it, x)[1], call(mha, x)[1])


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_attention_masks():
    mha = _mha(batch_first=True)
    it = from_multihead_attention(mha, tile_size=4)
    q, kv = _x(3, 5, 8), _x(3, 6, 8, seed=2)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[0, 4:] = True
    padding[2, 0] = True
    float_mask = _x(5, 6, seed=4)
    per_head = _x(3 * 2, 5, 6, seed=5)
    cases = [
        dict(key_padding_mask=padding),
        dict(attn_mask=float_mask),
        dict(attn_mask=float_mask, key_padding_mask=padding),
        dict(attn_mask=per_head),
        dict(attn_mask=per_head > 1.0, key_padding_mask=padding),
    ]
    for kwargs in cases:
        assert_same_function(
            lambda a, b, kw=kwargs: mha(a, b, b, **kw)[0],
            lambda a, b, kw=kwargs: it(a, b, b, **kw)[0],
            q,
            kv,
        )
        assert_close(
            it(q, kv, kv, average_attn_weights=False, **kwargs)[1],
            mha(q, kv, kv, average_attn_weights=False, **kwargs)[1],
        )


def test_unbatched_attention():
    mha = _mha()
    it = from_multihead_attention(mha)
    q, kv = _x(4, 8), _x(6, 8, seed=2)
    out, w = it(q, kv, kv)
    ref_out, ref_w = mha(q, kv, kv)
    assert_close(out, ref_out)
    assert_close(w, ref_w)


def test_attention_extra_tokens_are_refused():
    with pytest.raises(ValueError, match="add_bias_kv"):
        from_multihead_attention(nn.MultiheadAttention(8, 2, add_bias_kv=True))


# ------------------------------------------------------------------ recurrences
@pytest.mark.parametrize("complex_", [True, False])
def test_diagonal_ssm(complex_):
    torch.manual_seed(0)
    ssm = _randomize(DiagonalSSM(3, state_size=4, complex=complex_), scale=0.3)
    with torch.no_grad():
        ssm.log_dt.add_(2.0)  # long steps: the kernel decays visibly
    it = from_diagonal_ssm(ssm, tile_size=4)
    assert type(it.kernel_nn) is KernelMLP and it.grid == "causal"
    assert_same_function(ssm, it, _x(2, 11, 3))


def test_selective_scan():
    torch.manual_seed(0)
    scan = _randomize(SelectiveScan(3, state_size=4, dt_rank=2))
    it = from_selective_scan(scan, tile_size=4, source_tile=3)
    x, h_0 = _x(2, 11, 3), _x(2, 3, 4, seed=2)
    assert_same_function(scan, it, x)
    assert_same_function(scan, it, x, h_0)


@pytest.mark.parametrize(
    "cls, convert", [(MinGRU, from_mingru), (MinLSTM, from_minlstm)]
)
def test_min_rnn(cls, convert):
    torch.manual_seed(0)
    rnn = _randomize(cls(3, 5))
    it = convert(rnn, tile_size=3)
    assert isinstance(it, ScanIT)
    x, h_0 = _x(2, 9, 3), _x(2, 5, seed=2)
    assert_same_function(rnn, it, x)
    assert_same_function(rnn, it, x, h_0)


def _no_recurrence(m):
    with torch.no_grad():
        for k in range(m.num_layers):
            getattr(m, f"weight_hh_l{k}").zero_()
    return m


@pytest.mark.parametrize("batch_first", [True, False])
def test_gru_without_recurrent_weights(batch_first):
    torch.manual_seed(0)
    gru = _no_recurrence(
        _randomize(nn.GRU(3, 4, num_layers=2, batch_first=batch_first))
    )
    it = from_gru(gru, tile_size=3)
    x = _x(2, 8, 3) if batch_first else _x(8, 2, 3)
    h_0 = _x(2, 2, 4, seed=2)
    assert_same_function(gru, it, x, out=lambda y: y[0])
    assert_same_function(gru, it, x, h_0, out=lambda y: y[1])
    assert_close(
        it(x[0] if batch_first else x[:, 0])[0],
        gru(x[0] if batch_first else x[:, 0])[0],
    )  # unbatched


def test_lstm_without_recurrent_weights():
    torch.manual_seed(0)
    lstm = _no_recurrence(_randomize(nn.LSTM(3, 4, num_layers=2)))
    it = from_lstm(lstm, tile_size=3)
    x, h_0, c_0 = _x(8, 2, 3), _x(2, 2, 4, seed=2), _x(2, 2, 4, seed=3)
    assert_same_function(lambda t: lstm(t)[0], lambda t: it(t)[0], x)
    out, (h_n, c_n) = it(x, (h_0, c_0))
    ref, (ref_h, ref_c) = lstm(x, (h_0, c_0))
    assert_close(out, ref)
    assert_close(h_n, ref_h)
    assert_close(c_n, ref_c)


def test_recurrent_weights_are_refused():
    with pytest.raises(ValueError, match="nonlinear function"):
        from_gru(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="nonlinear function"):
        from_lstm(nn.LSTM(3, 4))


def test_gru_with_recurrent_weights_is_not_a_transform_of_its_state():
    """Why LSTM/GRU are not special cases: each transform here is affine in h_0.

    The initial state enters an integral transform as a value, so
    ``y(x, a h + (1 - a) h') = a y(x, h) + (1 - a) y(x, h')``. A GRU whose gates
    read the hidden state breaks this; the same GRU without recurrent weights
    (the largest GRU that is a special case) keeps it.
    """
    torch.manual_seed(0)
    gru = _randomize(nn.GRU(3, 4, batch_first=True), scale=1.0)
    x, h, h2 = _x(2, 6, 3), _x(1, 2, 4, seed=2), _x(1, 2, 4, seed=3)
    mix = 0.3 * h + 0.7 * h2

    def gap(f):
        return (f(x, mix) - (0.3 * f(x, h) + 0.7 * f(x, h2))).abs().max()

    assert gap(lambda a, b: gru(a, b)[0]) > 1e-3
    it = from_gru(_no_recurrence(gru))
    assert gap(lambda a, b: it(a, b)[0]) < 1e-12
    mingru = from_mingru(_randomize(MinGRU(3, 4)))
    assert gap(lambda a, b: mingru(a, b[0])) < 1e-12


def test_scan_is_causal():
    torch.manual_seed(0)
    it = from_selective_scan(_randomize(SelectiveScan(3, state_size=2)))
    x = _x(1, 10, 3)
    future = x.clone()
    future[:, 6:] += 1.0
    assert_close(it(future)[:, :6], it(x)[:, :6])
