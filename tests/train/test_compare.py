import json

import pytest

from itnet_geo.train.checkpoint import CheckpointError, save_checkpoint
from itnet_geo.train.compare import (
    compare_runs,
    format_table,
    load_history,
    run_clock,
    summarize,
)


def _history(accs, seconds=100.0, **extra):
    return [
        {
            "epoch": e,
            "train_loss": 3.0 / e,
            "val_acc": a,
            "clouds_per_s": 40.0 + e,
            "elapsed": seconds * e,
            **extra,
        }
        for e, a in enumerate(accs, start=1)
    ]


def _write_run(path, history):
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")
    return path


def test_summary_reports_best_mean_of_last_and_equal_training():
    history = _history([0.5, 0.8, 0.7, 0.9, 0.85])
    s = summarize(history, last=2, at_epoch=3)
    assert s["epochs"] == 5
    assert s["best"] == 0.9 and s["best_epoch"] == 4
    assert s["mean_last"] == pytest.approx(0.875) and s["last_epochs"] == 2
    assert s["final"] == 0.85
    assert s["best_at"] == 0.8 and s["acc_at"] == 0.7
    assert s["hours"] == pytest.approx(500 / 3600)
    assert s["clouds_per_s"] == 43.0  # the median


def test_summary_picks_the_best_epoch_as_training_picks_best_pt():
    # the highest accuracy, then the lowest validation loss, then the earliest
    history = _history([0.9, 0.7, 0.9, 0.9], val_loss=0.5)
    assert summarize(history)["best_epoch"] == 1
    history[2]["val_loss"] = 0.4
    assert summarize(history)["best_epoch"] == 3


def test_summary_of_a_run_without_validation():
    s = summarize(_history([None, None]), at_epoch=1)
    assert s["best"] is None and s["mean_last"] is None and s["final"] is None
    assert s["best_at"] is None and s["acc_at"] is None
    assert s["epochs"] == 2


def test_run_clock_continues_a_clock_restarted_by_a_resume():
    history = [{"elapsed": 100.0}, {"elapsed": 200.0}, {"elapsed": 90.0}, {}]
    assert run_clock(history) == [100.0, 200.0, 290.0, None]
    assert run_clock(_history([0.1, 0.2])) == [100.0, 200.0]


def test_compare_runs_at_the_epoch_all_have_reached(tmp_path):
    a = _write_run(tmp_path / "a", _history([0.5, 0.6, 0.7, 0.8]))
    b = _write_run(tmp_path / "b", _history([0.6, 0.65], seconds=50.0))
    png = tmp_path / "cmp.png"
    rows = compare_runs([a, b], out=png, last=3)
    assert [r["run"] for r in rows] == ["a", "b"]
    assert [r["at_epoch"] for r in rows] == [2, 2]
    assert [r["best_at"] for r in rows] == [0.6, 0.65]
    assert rows[0]["best"] == 0.8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(rows)
    assert "| a | 4 |" in table and "80.00 (4)" in table
    assert "best ≤ ep 2" in table and "65.00" in table
    rows = compare_runs([a, a / "metrics.jsonl"], labels=["x", "y"], at_epoch=3)
    assert rows[0]["acc_at"] == 0.7 and rows[1]["acc_at"] == 0.7


def test_a_history_file_is_labelled_by_its_name(tmp_path):
    run = _write_run(tmp_path / "run", _history([0.5]))
    shipped = tmp_path / "model_x.metrics.jsonl"
    shipped.write_bytes((run / "metrics.jsonl").read_bytes())
    rows = compare_runs([shipped, run / "metrics.jsonl"])
    assert [r["run"] for r in rows] == ["model_x", "run"]
    sources = [shipped, run / "metrics.jsonl", run]  # two named "run": all by path
    assert [r["run"] for r in compare_runs(sources)] == [str(s) for s in sources]


def test_runs_of_one_name_are_labelled_by_path(tmp_path):
    a = _write_run(tmp_path / "1" / "run", _history([0.5]))
    b = _write_run(tmp_path / "2" / "run", _history([0.6]))
    assert [r["run"] for r in compare_runs([a, b])] == [str(a), str(b)]


def test_history_from_a_checkpoint(tmp_path):
    history = _history([0.5, 0.7])
    payload = {
        "kind": "last",
        "model": {"name": "x"},
        "state_dict": {},
        "classes": ["a", "b"],
        "history": history,
    }
    save_checkpoint(tmp_path / "last.pt", payload)
    assert load_history(tmp_path / "last.pt") == history
    save_checkpoint(tmp_path / "best.pt", {**payload, "kind": "best", "history": []})
    with pytest.raises(CheckpointError, match=r"best.pt carries no training history"):
        load_history(tmp_path / "best.pt")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"epoch": 1}\n{"epoch": 2,\n', r"metrics.jsonl, line 2: not JSON"),
        ('{"epoch": 1}\n\n[1, 2]\n', r"line 3: expected a JSON object with an 'epoch'"),
        ("\n", r"no epoch recorded yet"),
    ],
)
def test_bad_metrics_name_the_file_and_line(tmp_path, content, message):
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_history(tmp_path)


def test_missing_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no metrics.jsonl in this directory"):
        load_history(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope does not exist"):
        load_history(tmp_path / "nope")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": ["x"]}, r"1 labels for 2 runs"),
        ({"labels": ["x", "x"]}, r"labels must differ"),
        ({"at_epoch": 0}, r"at_epoch must be at least 1"),
        ({"last": 0}, r"last must be at least 1"),
    ],
)
def test_compare_refuses_bad_options(tmp_path, kwargs, message):
    a = _write_run(tmp_path / "a", _history([0.5]))
    b = _write_run(tmp_path / "b", _history([0.6]))
    with pytest.raises(ValueError, match=message):
        compare_runs([a, b], **kwargs)
