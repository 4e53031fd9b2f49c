"""Weight averaging: the mean of state dicts, batch-norm statistics measured again."""

import pytest
import torch
from torch import nn

from itnet_geo.train import average_state_dicts, recalibrate_batchnorm


def test_average_is_the_entrywise_mean():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    c = {"w": torch.tensor([5.0, 1.0]), "n": torch.tensor(7)}
    out = average_state_dicts([a, b, c])
    assert torch.equal(out["w"], torch.tensor([3.0, 3.0]))
    assert out["w"].dtype == torch.float32
    assert out["n"].item() == 7  # integer counters: the last one's
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched


def test_average_of_one_is_itself():
    model = nn.Linear(3, 2)
    out = average_state_dicts([model.state_dict()])
    for key, value in model.state_dict().items():
        assert torch.equal(out[key], value)


@pytest.mark.parametrize(
    "other, message",
    [
        ({"w": torch.zeros(2), "extra": torch.zeros(1)}, "'extra'"),
        ({"w": torch.zeros(3)}, "entry 'w' of state dict 1"),
        ({"w": torch.zeros(2, dtype=torch.float64)}, "torch.float64"),
    ],
)
def test_average_refuses_different_models(other, message):
    with pytest.raises(ValueError, match=message):
        average_state_dicts([{"w": torch.zeros(2)}, other])
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])


def test_batchnorm_statistics_are_measured_over_every_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.0))
    model[1].running_mean.fill_(100.0)  # stale statistics, as after averaging
    data = torch.randn(60, 3) * 3 + 1
    batches = list(data.split(20))
    assert recalibrate_batchnorm(model, batches) == 1
    with torch.no_grad():
        hidden = model[0](data)
    # equal batches: the running mean is the mean over all shapes, the running
    # variance the mean of the batches' unbiased variances
    torch.testing.assert_close(model[1].running_mean, hidden.mean(0))
    variances = torch.stack([h.var(0) for h in hidden.split(20)])
    torch.testing.assert_close(model[1].running_var, variances.mean(0))
    assert model[1].momentum == 0.1 and not model.training
    assert recalibrate_batchnorm(nn.Linear(3, 4), batches) == 0  # no pass needed


def test_weighted_average_and_bad_weights():
    a = {"w": torch.tensor([0.0, 4.0])}
    b = {"w": torch.tensor([4.0, 0.0])}
    out = average_state_dicts([a, b], [1, 3])
    assert torch.equal(out["w"], torch.tensor([3.0, 1.0]))
    with pytest.raises(ValueError, match="one positive weight per state dict"):
        average_state_dicts([a, b], [1])
    with pytest.raises(ValueError, match="one positive weight per state dict"):
        average_state_dicts([a, b], [1, 0])
