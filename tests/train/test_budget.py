import math
import random

import pytest

from itnet_geo.train import budget_reserve, parse_duration, plan_total_steps


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1h", 3600.0),
        ("30m", 1800.0),
        ("5400s", 5400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (" 2M ", 120.0),
        (45, 45.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 2", "-5s", "0", "m30", "abc"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def _cost(done, n, steps_per_epoch, step_time, overhead, final):
    ends = math.ceil((done + n) / steps_per_epoch) - done // steps_per_epoch
    return n * step_time + ends * overhead + final


def test_plan_with_fake_timings():
    # 10 steps/epoch, 1 s/step, 5 s per epoch end, 100 s: 6 full epochs cost 90 s,
    # a 7th partial epoch of 5 steps fits exactly (65 + 7 * 5 = 100).
    assert plan_total_steps(100.0, 0, 10, 1.0, 5.0) == 65
    assert plan_total_steps(100.0, 0, 10, 1.0, 5.0, final_time=10.0) == 60
    assert plan_total_steps(100.0, 0, 10, 1.0, 5.0, max_steps=30) == 30
    # not even one step: nothing planned
    assert plan_total_steps(5.0, 0, 10, 1.0, 5.0) == 0
    assert plan_total_steps(3.0, 20, 10, 1.0, 5.0) == 20
    # from a resumed step count, only the remaining work counts
    assert plan_total_steps(45.0, 20, 10, 1.0, 5.0) == 20 + 30 + 0
    # mid-epoch (step 25 of epochs of 10): the current epoch's end still costs
    assert plan_total_steps(10.0, 25, 10, 1.0, 5.0) == 30
    assert plan_total_steps(9.0, 25, 10, 1.0, 5.0) == 29


def test_plan_is_maximal_and_fits():
    rng = random.Random(0)
    for _ in range(300):
        spe = rng.randint(1, 50)
        step = rng.uniform(0.01, 3.0)
        overhead = rng.uniform(0.0, 20.0)
        final = rng.uniform(0.0, 30.0)
        remaining = rng.uniform(0.0, 2000.0)
        done = spe * rng.randint(0, 5) + rng.choice([0, rng.randint(0, spe - 1)])
        total = plan_total_steps(remaining, done, spe, step, overhead, final)
        n = total - done
        assert n >= 0
        if n > 0:
            assert _cost(done, n, spe, step, overhead, final) <= remaining + 1e-9
        assert _cost(done, n + 1, spe, step, overhead, final) > remaining - 1e-9


def test_reserve_grows_with_budget():
    assert budget_reserve(100.0) == pytest.approx(4.0)
    assert budget_reserve(3600.0) == pytest.approx(109.0)
