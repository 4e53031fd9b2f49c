import math

import pytest

from itnet_geo.train import WarmupCosine


def test_warmup_then_cosine_to_min():
    s = WarmupCosine(1.0, total_steps=101, warmup_steps=10, min_ratio=0.1)
    lrs = [s.lr(i) for i in range(101)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[100] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


@pytest.mark.parametrize("new_total", [60, 150, 42])
def test_retarget_is_continuous_and_still_ends_at_min(new_total):
    s = WarmupCosine(2.0, total_steps=100, warmup_steps=5, min_ratio=0.01)
    before = s.lr(40)
    s.retarget(40, new_total)
    assert s.lr(40) == pytest.approx(before)
    assert s.lr(new_total - 1) == pytest.approx(0.02)
    lrs = [s.lr(i) for i in range(40, new_total)]
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:], strict=False))


def test_retarget_during_warmup_keeps_warmup():
    s = WarmupCosine(1.0, total_steps=100, warmup_steps=10)
    s.retarget(3, 50)
    assert s.lr(3) == pytest.approx(0.4)
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(49) == pytest.approx(0.01)
    s.retarget(4, 6)  # shorter than the warm-up: warm-up shrinks, ends at min
    assert s.warmup_steps == 5
    assert s.lr(5) == pytest.approx(0.01)


def test_state_dict_round_trip_is_plain():
    s = WarmupCosine(1.0, total_steps=100, warmup_steps=10)
    s.retarget(50, 80)
    state = s.state_dict()
    assert all(isinstance(v, (int, float)) for v in state.values())
    t = WarmupCosine(3.0, total_steps=5)
    t.load_state_dict(state)
    assert [t.lr(i) for i in range(50, 80)] == [s.lr(i) for i in range(50, 80)]


def test_bad_arguments():
    with pytest.raises(ValueError):
        WarmupCosine(1.0, total_steps=0)
    with pytest.raises(ValueError):
        WarmupCosine(1.0, total_steps=10, warmup_steps=-1)
