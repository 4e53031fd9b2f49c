import json
import math

import pytest
import torch
from _train_fakes import Blobs, FakeClock, TinyNet

from itnet_geo.train import (
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    WarmupCosine,
    average_run,
    average_state_dicts,
    fit,
    load_checkpoint,
    mixed_cross_entropy,
)
from itnet_geo.train import loop as loop_module
from itnet_geo.transforms import SubsamplePoints

CONFIG = dict(batch_size=8, lr=1e-2, augment=("rotate-z", "scale", "jitter"))


@pytest.fixture(scope="module")
def data():
    return Blobs(per_class=8, num_classes=3), Blobs(per_class=3, seed=1)


def _run(out, data, config, resume=None, callback=None, **model_kwargs):
    torch.manual_seed(0)
    model = TinyNet(**model_kwargs)
    train, val = data
    result = fit(
        model,
        train,
        val,
        config,
        out,
        classes=train.classes,
        resume=resume,
        callback=callback,
        progress=False,
    )
    return model, result


def _kill_after(epoch):
    def callback(record):
        if record["epoch"] == epoch:
            raise KeyboardInterrupt  # as if killed right after the checkpoint

    return callback


def test_outputs_and_checkpoint_contents(tmp_path, data):
    config = TrainConfig(epochs=2, **CONFIG)
    model, result = _run(tmp_path, data, config)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "val_acc", "val_class_acc", "lr", "clouds_per_s"} <= set(
        records[0]
    )
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "epoch 2/2" in (tmp_path / "train.log").read_text()
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert last["kind"] == "last" and best["kind"] == "best"
    assert "optimizer" in last and "optimizer" not in best
    assert last["epoch"] == 2 and last["step"] == result.steps == 2 * 3
    assert last["model"] == {"name": "tiny", "kwargs": model.config}
    assert last["classes"] == ["class0", "class1", "class2"]
    assert last["train"]["lr"] == 1e-2
    assert {"torch", "numpy", "python", "loader"} <= set(last["rng"][0])
    for key, value in model.state_dict().items():
        assert torch.equal(last["state_dict"][key], value)
    assert best["epoch"] == result.best["epoch"]


@pytest.fixture(scope="module")
def resampled():
    # training shapes read through a random draw of 16 of their 32 points
    train = Blobs(per_class=8, num_classes=3)
    train.transform = SubsamplePoints(16)
    return train, Blobs(per_class=3, seed=1)


@pytest.mark.parametrize("dataset", ["data", "resampled"])
def test_resume_after_a_kill_gives_the_same_parameters(tmp_path, dataset, request):
    data = request.getfixturevalue(dataset)
    config = TrainConfig(epochs=3, **CONFIG)
    full, full_result = _run(tmp_path / "full", data, config)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", data, config, callback=_kill_after(1))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed, result = _run(
        tmp_path / "cut", data, config, resume=tmp_path / "cut" / "last.pt"
    )
    assert result.steps == full_result.steps
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert [h["train_loss"] for h in result.history] == [
        h["train_loss"] for h in full_result.history
    ]
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_resume_refuses_another_model_or_a_best_checkpoint(tmp_path, data):
    config = TrainConfig(epochs=1, **CONFIG)
    _run(tmp_path, data, config)
    with pytest.raises(ValueError, match="model"):
        _run(tmp_path, data, config, resume=tmp_path / "last.pt", hidden=8)
    with pytest.raises(ValueError, match="last.pt"):
        _run(tmp_path, data, config, resume=tmp_path / "best.pt")
    two_processes = load_checkpoint(tmp_path / "last.pt")  # as if written by 2
    two_processes.update(world_size=2, steps_per_epoch=2)
    with pytest.raises(ValueError, match="resume with --nproc 2"):
        _run(tmp_path, data, config, resume=two_processes)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data):
    config = TrainConfig(epochs=4, **CONFIG)
    # 3 steps per epoch: the 8th training forward (epoch 3) returns NaN.
    with pytest.raises(NonFiniteLossError, match="non-finite") as info:
        _run(tmp_path, data, config, nan_after=7)
    assert info.value.epoch == 3 and info.value.step == 8
    assert info.value.checkpoint == tmp_path / "last.pt"
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 6
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_without_validation_the_latest_epoch_is_best(tmp_path, data):
    torch.manual_seed(0)
    train, _ = data
    result = fit(
        TinyNet(),
        train,
        None,
        TrainConfig(epochs=2, **CONFIG),
        tmp_path,
        classes=train.classes,
        progress=False,
    )
    assert result.best["epoch"] == 2
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


def test_sgd_and_loss_decreases(tmp_path, data):
    config = TrainConfig(
        epochs=6, batch_size=8, lr=0.05, optimizer="sgd", label_smoothing=0.0
    )
    _, result = _run(tmp_path, data, config)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="budget"):
        TrainConfig(epochs=None)
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(augment=("mirror",))
    cfg = TrainConfig(augment=["scale"], time_budget=60.0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="not a time budget"):
        TrainConfig(epochs=10, time_budget=60.0, average_epochs=2)
    with pytest.raises(ValueError, match=r"average_epochs \(10\) must be fewer"):
        TrainConfig(epochs=10, average_epochs=10)
    with pytest.raises(ValueError, match="average_epochs must be >= 0"):
        TrainConfig(average_epochs=-1)


def test_averaged_epochs_train_at_the_final_rate_and_their_mean_is_kept(tmp_path, data):
    config = TrainConfig(
        epochs=5, average_epochs=2, keep_epochs=2, min_lr_ratio=0.1, **CONFIG
    )
    _, result = _run(tmp_path, data, config)
    steps = result.steps // 5
    last = load_checkpoint(tmp_path / "last.pt")
    schedule = WarmupCosine(1.0, 1)
    schedule.load_state_dict(last["schedule"])
    rates = [schedule.lr(s) for s in range(result.steps)]
    cosine, tail = rates[: 3 * steps], rates[3 * steps :]
    assert tail == [pytest.approx(1e-3)] * (2 * steps)
    assert cosine[-1] == pytest.approx(1e-3) and min(cosine[:-1]) > 1.01e-3
    assert cosine[steps:] == sorted(cosine[steps:], reverse=True)
    assert [r["lr"] for r in result.history][3:] == [pytest.approx(1e-3)] * 2
    # the running mean in last.pt is the mean of the two epochs' weights
    assert last["average"]["epochs"] == [4, 5]
    kept = [load_checkpoint(p)["state_dict"] for p in sorted(tmp_path.glob("epochs/*"))]
    mean = average_state_dicts(kept)
    for key, value in last["average"]["state_dict"].items():
        torch.testing.assert_close(value, mean[key], rtol=1e-6, atol=1e-7)


def test_a_run_killed_while_averaging_resumes_its_average(tmp_path, data):
    config = TrainConfig(epochs=5, average_epochs=3, min_lr_ratio=0.1, **CONFIG)
    _run(tmp_path / "full", data, config)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", data, config, callback=_kill_after(4))
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["average"]["epochs"] == [3, 4]
    _run(tmp_path / "cut", data, config, resume=tmp_path / "cut" / "last.pt")
    full = load_checkpoint(tmp_path / "full" / "last.pt")["average"]
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")["average"]
    assert resumed["epochs"] == full["epochs"] == [3, 4, 5]
    for key, value in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    # a run without averaging keeps none, and has none to write
    _, plain = _run(tmp_path / "plain", data, TrainConfig(epochs=1, **CONFIG))
    assert load_checkpoint(plain.last_path)["average"] is None
    with pytest.raises(CheckpointError, match="holds no weight average"):
        average_run(plain.last_path, tmp_path / "average.pt")


# -- time budget (a fake clock: each forward pass costs 0.1 s) ----------------------


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(loop_module, "time", fake)
    return fake


def _budget_run(
    out, data, clock, budget, epochs=None, callback=None, resume=None, model=None
):
    config = TrainConfig(epochs=epochs, time_budget=budget, min_lr_ratio=0.01, **CONFIG)
    torch.manual_seed(0)
    model = TinyNet(clock=clock) if model is None else model
    train, val = data
    return fit(
        model,
        train,
        val,
        config,
        out,
        classes=train.classes,
        resume=resume,
        callback=callback,
        clock_start=clock.now,
        progress=False,
    )


def test_time_budget_plans_a_schedule_that_ends_within_it(tmp_path, data, clock):
    start = clock.now
    result = _budget_run(tmp_path, data, clock, budget=20.0)
    plan = result.plan
    assert plan["step_time"] == pytest.approx(0.1)
    assert result.steps == plan["total_steps"] > 3
    assert clock.now - start <= 20.0
    assert result.elapsed == pytest.approx(clock.now - start)
    # the cosine finished: the last step ran at the minimum learning rate
    assert result.history[-1]["lr"] == pytest.approx(1e-2 * 0.01)
    # and the run used most of the budget
    assert clock.now - start > 0.7 * 20.0


def test_time_budget_respects_an_epoch_cap(tmp_path, data, clock):
    result = _budget_run(tmp_path, data, clock, budget=100.0, epochs=2)
    assert result.steps == 2 * 3
    assert result.history[-1]["lr"] == pytest.approx(1e-4)


def test_time_budget_replans_when_steps_get_slower(tmp_path, data, clock):
    start = clock.now
    torch.manual_seed(0)
    model = TinyNet(clock=clock)

    def slow_down(record):
        if record["epoch"] == 2:
            model.cost = 0.3  # three times slower from epoch 3 on

    result = _budget_run(
        tmp_path, data, clock, budget=20.0, callback=slow_down, model=model
    )
    assert result.plan["replans"] >= 1
    assert result.plan["total_steps"] < result.plan["initial_total_steps"]
    assert result.steps == result.plan["total_steps"]
    assert clock.now - start <= 20.0
    assert result.history[-1]["lr"] == pytest.approx(1e-4)


def test_time_budget_shrinks_mid_epoch_when_the_last_epoch_slows(tmp_path, data, clock):
    start = clock.now
    first = _budget_run(tmp_path / "a", data, clock, budget=20.0)
    planned = first.steps
    # Same run, but from 12 steps before the end every step takes 0.4 s
    # (the 3 calibration steps count as forward calls too).
    clock.now = start = 5000.0
    torch.manual_seed(0)
    model = TinyNet(clock=clock, slow_after=(3 + planned - 12, 0.4))
    result = _budget_run(tmp_path / "b", data, clock, budget=20.0, model=model)
    assert result.steps < planned
    assert clock.now - start <= 20.0
    assert result.history[-1]["lr"] == pytest.approx(1e-4)


def test_time_budget_survives_resume(tmp_path, data, clock):
    start = clock.now
    with pytest.raises(KeyboardInterrupt):
        _budget_run(tmp_path, data, clock, budget=20.0, callback=_kill_after(2))
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["elapsed"] == pytest.approx(clock.now - start, abs=0.5)
    clock.now += 1000.0  # time while the run was dead does not count
    restart = clock.now
    result = _budget_run(
        tmp_path, data, clock, budget=20.0, resume=tmp_path / "last.pt"
    )
    assert result.steps == result.plan["total_steps"]
    assert result.elapsed <= 20.0
    assert saved["elapsed"] + (clock.now - restart) == pytest.approx(result.elapsed)
    assert result.history[-1]["lr"] == pytest.approx(1e-4)


def test_the_run_clock_counts_every_session_of_a_resumed_run(tmp_path, data, clock):
    start = clock.now
    with pytest.raises(KeyboardInterrupt):
        _budget_run(
            tmp_path, data, clock, budget=None, epochs=3, callback=_kill_after(1)
        )
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["elapsed"] == pytest.approx(clock.now - start, abs=0.5)
    clock.now += 1000.0  # time while the run was dead does not count
    restart = clock.now
    result = _budget_run(
        tmp_path, data, clock, budget=None, epochs=3, resume=tmp_path / "last.pt"
    )
    assert result.elapsed == pytest.approx(saved["elapsed"] + clock.now - restart)
    times = [h["elapsed"] for h in result.history]
    assert times == sorted(times) and times[-1] < 1000.0


def test_elapsed_of_checkpoints_written_before_the_key():
    history = [{"epoch": 1, "elapsed": 120.5}, {"epoch": 2, "elapsed": 240.0}]
    assert loop_module.elapsed_before({"history": history}) == 240.0
    budget = {"budget": {"used": 99.0}, "history": history}
    assert loop_module.elapsed_before(budget) == 99.0
    assert loop_module.elapsed_before(dict(budget, elapsed=300.0)) == 300.0
    assert loop_module.elapsed_before(None) == 0.0


def test_budget_too_small_is_a_clear_error(tmp_path, data, clock):
    with pytest.raises(ValueError, match="too small"):
        _budget_run(tmp_path, data, clock, budget=1.5)


def test_planned_epochs_cover_partial_last_epoch(tmp_path, data, clock):
    result = _budget_run(tmp_path, data, clock, budget=9.0)
    assert result.epochs == math.ceil(result.steps / 3)


def test_mixed_cross_entropy_weighs_both_labels():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    partner, lam = torch.tensor([1, 0, 3, 2]), torch.tensor([0.0, 1.0, 0.25, 0.25])
    out = mixed_cross_entropy(logits, y, 0.1, partner, lam)
    ce = torch.nn.functional.cross_entropy
    own = ce(logits, y, label_smoothing=0.1, reduction="none")
    other = ce(logits, y[partner], label_smoothing=0.1, reduction="none")
    expected = torch.stack(
        [
            own[0],
            other[1],
            0.75 * own[2] + 0.25 * other[2],
            0.75 * own[3] + 0.25 * other[3],
        ]
    ).mean()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(
        mixed_cross_entropy(logits, y, 0.1), ce(logits, y, label_smoothing=0.1)
    )


def test_training_with_cutmix_learns(tmp_path, data, monkeypatch):
    mixed = []

    def recording(logits, y, label_smoothing=0.0, partner=None, lam=None):
        mixed.append(partner is not None)
        return mixed_cross_entropy(logits, y, label_smoothing, partner, lam)

    monkeypatch.setattr(loop_module, "mixed_cross_entropy", recording)
    config = TrainConfig(
        epochs=8, batch_size=8, lr=1e-2, label_smoothing=0.0, augment=("cutmix:0.5",)
    )
    _, result = _run(tmp_path, data, config)
    assert 0 < sum(mixed) < len(mixed)  # about half the batches mixed
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1]["val_acc"] > 0.5
