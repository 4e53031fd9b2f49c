import csv
import json
import shutil

import pytest
import torch

from itnet_geo import cli
from itnet_geo.train import load_checkpoint
from itnet_geo.train.checkpoint import TRAINING_STATE, build_model, save_checkpoint

TINY_MODEL = ["--model-preset", "smoke"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One `itnet-geo demo --smoke` run shared by the tests below."""
    tmp = tmp_path_factory.mktemp("demo")
    args = [
        "demo",
        "--smoke",
        "--out",
        str(tmp / "run"),
        "--root",
        str(tmp / "data"),
        "--cache-dir",
        str(tmp / "cache"),
        "--no-progress",
    ]
    code = cli.main(args)
    assert code == 0
    return tmp


def _main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- parsing --------------------------------------------------------------------------


def test_parser_subcommands_and_defaults():
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "train",
            "--dataset",
            "modelnet40",
            "--root",
            "r",
            "--out",
            "o",
            "--time-budget",
            "1h",
            "--preset",
            "cpu-1h",
            "--augment",
            "scale",
            "jitter",
        ]
    )
    assert args.func is cli._cmd_train
    assert (args.dataset, args.root, args.out, args.time_budget) == (
        "modelnet40",
        "r",
        "o",
        "1h",
    )
    assert args.augment == ["scale", "jitter"]
    assert args.resume is None and args.epochs is None and args.val_fraction == 0.1
    assert parser.parse_args(["train", "--out", "o", "--resume"]).resume == ""
    assert parser.parse_args(["train", "--out", "o"]).hks_eigs == 64
    assert (
        parser.parse_args(["train", "--out", "o", "--hks-eigs", "300"]).hks_eigs == 300
    )
    assert (
        parser.parse_args(["train", "--out", "o", "--resume", "x.pt"]).resume == "x.pt"
    )
    ev = parser.parse_args(["eval", "--checkpoint", "c.pt", "--votes", "3"])
    assert (ev.split, ev.votes, ev.root) == ("test", 3, None)
    assert parser.parse_args(["demo"]).out.endswith("demo")
    assert parser.parse_args(["bench", "models", "--quick"]).scripts == ["models"]
    assert parser.parse_args(["info"]).func is cli._cmd_info


def test_train_settings_from_preset_and_flags(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "train",
            "--dataset",
            "modelnet40",
            "--root",
            str(tmp_path),
            "--out",
            "o",
            "--preset",
            "cpu-1h",
            "--lr",
            "0.01",
        ]
    )
    spec, config, model = cli._train_settings(args, "modelnet40")
    assert config.time_budget == 3600.0 and config.epochs is None
    assert config.lr == 0.01  # the flag wins over the preset
    assert model["model_preset"] == "cpu-1h"
    assert spec.kind == "modelnet40" and spec.num_points == 1024
    args = parser.parse_args(
        ["train", "--dataset", "shrec16", "--root", "r", "--out", "o", "--epochs", "3"]
    )
    spec, config, _ = cli._train_settings(args, "shrec16")
    assert spec.input == "mesh" and config.epochs == 3 and config.time_budget is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--dataset", "imagenet", "--out", "o"], "invalid choice"),
        (["train", "--dataset", "modelnet40", "--out", "o"], "--root is required"),
        (["train", "--out", "o"], "--dataset is required"),
        (["frobnicate"], "invalid choice"),
        (
            ["train", "--dataset", "synthetic", "--out", "o", "--time-budget", "soon"],
            "duration",
        ),
        (
            ["train", "--dataset", "synthetic", "--out", "o", "--preset", "gpu-1d"],
            "unknown preset",
        ),
        (
            ["train", "--dataset", "synthetic", "--out", "o", "--preset", "cpu-1h"]
            + ["--average-epochs", "5"],
            "--preset cpu-1h plans to a time budget: take its model with "
            "--model-preset cpu-1h and give --epochs",
        ),
        (
            ["train", "--dataset", "synthetic", "--out", "o", "--time-budget", "1h"]
            + ["--average-epochs", "5"],
            "average_epochs needs a fixed number of epochs, not a time budget",
        ),
    ],
)
def test_bad_arguments_fail_with_one_line(capsys, argv, message):
    try:
        code = cli.main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    assert code in (cli.EXIT_USAGE, cli.EXIT_FAILURE)
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("itnet-geo: error:")


def test_missing_root_fails_clearly(tmp_path, capsys):
    code, out, err = _main(
        capsys,
        "train",
        "--dataset",
        "modelnet40",
        "--root",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "run"),
    )
    assert code == cli.EXIT_FAILURE
    assert "not a folder" in err and len(err.strip().splitlines()) == 1


def test_resume_without_a_run_fails_clearly(tmp_path, capsys):
    code, _, err = _main(capsys, "train", "--out", str(tmp_path), "--resume")
    assert code == cli.EXIT_FAILURE and "nothing to resume" in err


# -- demo, eval -----------------------------------------------------------------------


def test_demo_smoke_writes_everything(demo_run):
    run = demo_run / "run"
    for name in ("metrics.jsonl", "best.pt", "last.pt", "results.json", "train.log"):
        assert (run / name).is_file(), name
    for name in ("curves.png", "confusion.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    log_lines = (run / "train.log").read_text().splitlines()
    assert "itnet_geo" in log_lines[0] and "process(es)" in log_lines[0]
    assert "data: synthetic" in log_lines[1]
    assert "model: itnet_classifier" in log_lines[2]
    assert sum("epoch 1/1" in line for line in log_lines) == 1  # one handler
    results = json.loads((run / "results.json").read_text())
    assert results["split"] == "test" and results["n"] == 8
    rows = _read_csv(run / "predictions.csv")
    assert len(rows) == 8 and all("/test/" in row["name"] for row in rows)
    assert [row["name"].split("/")[0] for row in rows] == [
        row["label"] for row in rows
    ]  # the true class is the file's class folder
    correct = sum(int(row["correct"]) for row in rows)
    assert correct / 8 == pytest.approx(results["accuracy"])
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["model"]["name"] == "itnet_classifier"
    assert best["classes"] == ["cone", "cube", "cylinder", "sphere"]
    assert best["data"]["kind"] == "synthetic"
    assert best["version"]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _demo_data(demo_run):
    """Where the shared demo run's shapes and their cache are."""
    return ["--root", str(demo_run / "data"), "--cache-dir", str(demo_run / "cache")]


def test_eval_prints_one_json_line(demo_run, tmp_path, capsys):
    run = demo_run / "run"
    code, out, err = _main(
        capsys,
        "eval",
        "--checkpoint",
        str(run / "best.pt"),
        "--root",
        str(demo_run / "data"),
        "--cache-dir",
        str(demo_run / "cache"),
        "--split",
        "test",
        "--predictions",
        str(tmp_path / "pred.csv"),
    )
    assert code == 0, err
    # the same checkpoint on the same split: the run's own table
    assert _read_csv(tmp_path / "pred.csv") == _read_csv(run / "predictions.csv")
    lines = out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) == {"accuracy", "class_accuracy", "n"}
    assert result["n"] == 8
    expected = json.loads((run / "results.json").read_text())
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    # voting and the carved validation split work too
    code, out, _ = _main(
        capsys,
        "eval",
        "--checkpoint",
        str(run / "best.pt"),
        "--cache-dir",
        str(demo_run / "cache"),
        "--split",
        "val",
        "--votes",
        "2",
    )
    assert code == 0
    assert json.loads(out)["n"] == 4


def _class_root(demo_run, tmp_path, classes, rename=None):
    """A folder root holding the test meshes of some classes (maybe renamed)."""
    root = tmp_path / "eval_root"
    for cls in classes:
        target = (rename or {}).get(cls, cls)
        shutil.copytree(demo_run / "data" / cls / "test", root / target / "test")
    return root


def _eval_folder(capsys, demo_run, root, tmp_path, *options):
    """`eval` of the demo model on a folder root of some of its classes."""
    best = demo_run / "run" / "best.pt"
    folder = ["--dataset", "folder", "--root", str(root)]
    cache = ["--cache-dir", str(tmp_path / "c")]
    return _main(capsys, "eval", "--checkpoint", str(best), *folder, *cache, *options)


def test_eval_matches_classes_by_name(demo_run, tmp_path, capsys):
    root = _class_root(demo_run, tmp_path, ["sphere", "cube"])
    code, out, err = _eval_folder(
        capsys, demo_run, root, tmp_path, "--predictions", str(tmp_path / "pred.csv")
    )
    assert code == 0, err
    assert json.loads(out)["n"] == 4
    rows = _read_csv(tmp_path / "pred.csv")
    assert sorted({row["label"] for row in rows}) == ["cube", "sphere"]
    assert {row["prediction"] for row in rows} <= set(
        load_checkpoint(demo_run / "run" / "best.pt")["classes"]
    )


def test_eval_unknown_class_is_a_clear_error(demo_run, tmp_path, capsys):
    root = _class_root(demo_run, tmp_path, ["sphere", "cube"], {"cube": "banana"})
    code, out, err = _eval_folder(capsys, demo_run, root, tmp_path)
    assert code == cli.EXIT_FAILURE and out == ""
    assert "unknown to the checkpoint: banana (it knows " in err
    assert len(err.strip().splitlines()) == 1


def test_eval_of_several_checkpoints_scores_their_ensemble(demo_run, tmp_path, capsys):
    run = demo_run / "run"
    common = _demo_data(demo_run)
    best = str(run / "best.pt")
    # a model twice is that model: same probabilities, same table
    code, out, err = _main(
        capsys,
        "eval",
        "--checkpoint",
        best,
        best,
        *common,
        "--predictions",
        str(tmp_path / "twice.csv"),
    )
    assert code == 0, err
    result = json.loads(out)
    expected = json.loads((run / "results.json").read_text())
    assert result["n"] == 8
    assert result["accuracy"] == pytest.approx(expected["accuracy"])
    assert _read_csv(tmp_path / "twice.csv") == _read_csv(run / "predictions.csv")
    # two different models: their mean probability
    code, out, err = _main(
        capsys, "eval", "--checkpoint", best, str(run / "last.pt"), *common
    )
    assert code == 0, err
    assert json.loads(out)["n"] == 8
    other = tmp_path / "other.pt"
    save_checkpoint(other, {**load_checkpoint(best), "classes": ["a", "b", "c", "d"]})
    code, out, err = _main(capsys, "eval", "--checkpoint", best, str(other), *common)
    assert code == cli.EXIT_FAILURE and out == ""
    assert f"{other} was trained on other classes than {best}" in err


def test_ensemble_packs_checkpoints_into_one_file_eval_reads(
    demo_run, tmp_path, capsys
):
    run = demo_run / "run"
    members = [str(run / "best.pt"), str(run / "last.pt")]
    common = _demo_data(demo_run)
    code, out, err = _main(
        capsys, "ensemble", *members, "--out", str(tmp_path / "ens.pt")
    )
    assert code == 0, err
    line = json.loads(out)
    assert line["members"] == ["best.pt", "last.pt"] and line["classes"] == 4
    one = sum(
        p.numel()
        for p in build_model(load_checkpoint(members[0])["model"]).parameters()
    )
    assert line["parameters"] == 2 * one
    scores = []
    for checkpoints in (members, [str(tmp_path / "ens.pt")]):
        predictions = tmp_path / f"{len(checkpoints)}.csv"
        code, out, err = _main(
            capsys,
            "eval",
            "--checkpoint",
            *checkpoints,
            *common,
            "--predictions",
            str(predictions),
        )
        assert code == 0, err
        scores.append((json.loads(out), _read_csv(predictions)))
    assert scores[0] == scores[1]
    # a member of other classes: one line, nothing written
    other = tmp_path / "other.pt"
    save_checkpoint(other, {**load_checkpoint(members[0]), "classes": list("abcd")})
    bad = tmp_path / "bad.pt"
    code, out, err = _main(
        capsys, "ensemble", members[0], str(other), "--out", str(bad)
    )
    assert code == cli.EXIT_FAILURE and out == "" and not bad.exists()
    assert "trained on other classes" in err and len(err.strip().splitlines()) == 1


def test_eval_weighs_class_accuracies(demo_run, tmp_path, capsys):
    run = demo_run / "run"
    common = [
        "eval",
        "--checkpoint",
        str(run / "best.pt"),
        *_demo_data(demo_run),
        "--predictions",
        str(tmp_path / "pred.csv"),
    ]
    rows = _read_csv(run / "predictions.csv")
    labels = sorted({row["label"] for row in rows})
    weights = {c: float(i + 1) for i, c in enumerate(labels)}
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(weights))
    code, out, err = _main(capsys, *common, "--class-weights", str(path))
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"accuracy", "class_accuracy", "n", "weighted_accuracy"}
    # the same figure from the predictions table, by hand
    right = {c: [int(r["correct"]) for r in rows if r["label"] == c] for c in labels}
    expected = sum(weights[c] * sum(v) / len(v) for c, v in right.items())
    assert result["weighted_accuracy"] == pytest.approx(
        expected / sum(weights.values())
    )
    # a class the model does not know, a named set of other classes: one line each
    path.write_text(json.dumps({**weights, "banana": 1}))
    code, out, err = _main(capsys, *common, "--class-weights", str(path))
    assert code == cli.EXIT_FAILURE and out == ""
    assert "does not know: banana" in err and len(err.strip().splitlines()) == 1
    code, out, err = _main(capsys, *common, "--class-weights", "modelnet10-test")
    assert code == cli.EXIT_FAILURE and "bathtub" in err
    # a root without some weighed class cannot say how that class would score
    path.write_text(json.dumps(weights))
    root = _class_root(demo_run, tmp_path, ["sphere", "cube"])
    code, out, err = _eval_folder(
        capsys, demo_run, root, tmp_path, "--class-weights", str(path)
    )
    assert code == cli.EXIT_FAILURE and out == ""
    missing = sorted(set(labels) - {"sphere", "cube"})
    assert f"no shape in the test split of {root}: {', '.join(missing)}" in err


def test_eval_bad_checkpoints(demo_run, tmp_path, capsys):
    code, _, err = _main(capsys, "eval", "--checkpoint", str(tmp_path / "none.pt"))
    assert code == cli.EXIT_FAILURE and "does not exist" in err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((demo_run / "run" / "best.pt").read_bytes()[:500])
    code, _, err = _main(capsys, "eval", "--checkpoint", str(corrupt))
    assert code == cli.EXIT_FAILURE
    assert "cannot be read" in err and len(err.strip().splitlines()) == 1


def _train_smoke(capsys, demo_run, out, epochs, *extra):
    """A successful ``train`` of the smoke model on :func:`_tiny_train`'s shapes."""
    cache = ["--cache-dir", str(demo_run / "cache")]
    args = [*_tiny_train(demo_run, out, epochs), *TINY_MODEL, *cache, "--no-progress"]
    code, stdout, err = _main(capsys, *args, *extra)
    assert code == 0, err
    return stdout


def _tiny_train(demo_run, out, epochs):
    """``train`` arguments for a few small synthetic shapes of the demo's data."""
    return [
        "train",
        "--dataset",
        "synthetic",
        "--root",
        str(demo_run / "data"),
        "--out",
        str(out),
        "--synthetic-classes",
        "4",
        "--synthetic-train",
        "6",
        "--synthetic-test",
        "2",
        "--num-points",
        "128",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
    ]


def test_train_then_resume_a_finished_run(demo_run, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    code, stdout, err = _main(
        capsys, *_tiny_train(demo_run, out, 2), "--votes", "2", *TINY_MODEL, *common
    )
    assert code == 0, err
    assert "test accuracy" in stdout and "2 votes" in stdout
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2
    code, stdout, err = _main(capsys, "train", "--out", str(out), "--resume", *common)
    assert code == 0, err
    assert load_checkpoint(out / "last.pt")["step"] == last["step"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_new_run_does_not_replace_a_run_in_its_folder(
    demo_run, tmp_path, capsys, monkeypatch
):
    """Without --out the run goes to runs/<dataset>; a second new run there
    stops before touching it (one error line naming the epoch and the resume
    command), --overwrite replaces it, --resume FILE continues in its folder."""
    monkeypatch.chdir(tmp_path)
    args = _tiny_train(demo_run, "unused", 1)
    del args[args.index("--out") : args.index("--out") + 2]
    common = [*TINY_MODEL, "--cache-dir", str(demo_run / "cache"), "--no-progress"]
    code, _, err = _main(capsys, *args, *common)
    assert code == 0, err
    last = tmp_path / "runs" / "synthetic" / "last.pt"
    before = last.read_bytes()
    for nproc in ["1", "2"]:  # refused before any process starts
        code, _, err = _main(capsys, *args, *common, "--nproc", nproc)
        assert code == cli.EXIT_FAILURE and len(err.strip().splitlines()) == 1
        assert "already holds a run (last.pt at epoch 1 of 1)" in err
        assert "itnet-geo train --out runs/synthetic --resume" in err
        assert last.read_bytes() == before
    code, _, err = _main(capsys, *args, *common, "--epochs", "2", "--overwrite")
    assert code == 0, err
    assert load_checkpoint(last)["epoch"] == 2
    code, stdout, err = _main(capsys, "train", "--resume", str(last), "--no-progress")
    assert code == 0, err
    assert f"run folder {last.parent}:" in stdout
    assert len(list(tmp_path.glob("runs/*"))) == 1
    code, _, err = _main(capsys, "train", "--resume")
    assert code == cli.EXIT_FAILURE and "--resume needs the run" in err


def test_resume_from_a_moved_checkpoint_brings_its_best(demo_run, tmp_path, capsys):
    """A run carried to another machine: last.pt + best.pt resumed into a new folder."""
    first = tmp_path / "first"
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    code, _, err = _main(capsys, *_tiny_train(demo_run, first, 2), *TINY_MODEL, *common)
    assert code == 0, err
    carried = tmp_path / "carried"
    carried.mkdir()
    for name in ("last.pt", "best.pt"):
        shutil.copy(first / name, carried / name)

    def resume_into(name):
        resume = ["--resume", str(carried / "last.pt")]
        return _main(capsys, "train", "--out", str(tmp_path / name), *resume, *common)

    out = tmp_path / "second"
    code, _, err = resume_into("second")
    assert code == 0, err
    assert (out / "best.pt").read_bytes() == (first / "best.pt").read_bytes()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    first_result = json.loads((first / "results.json").read_text())
    second_result = json.loads((out / "results.json").read_text())
    assert second_result["accuracy"] == first_result["accuracy"]

    (carried / "best.pt").unlink()
    code, _, err = resume_into("third")
    assert code == cli.EXIT_FAILURE
    assert "best.pt" in err and str(carried / "last.pt") in err
    assert not (tmp_path / "third" / "last.pt").exists()

    shutil.copy(first / "last.pt", carried / "best.pt")  # not the best epoch's file
    code, _, err = resume_into("fourth")
    assert code == cli.EXIT_FAILURE and "not the best.pt of the same run" in err


def test_train_on_all_of_train_without_validation(demo_run, tmp_path, capsys):
    """--val-fraction 0, no test split: the last epoch is kept, results.json is JSON."""
    root = tmp_path / "train_only"
    for cls in ("sphere", "cube"):
        shutil.copytree(demo_run / "data" / cls / "train", root / cls / "train")
    out = tmp_path / "run"
    code, stdout, err = _main(
        capsys,
        "train",
        "--dataset",
        "folder",
        "--root",
        str(root),
        "--out",
        str(out),
        "--val-fraction",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--num-points",
        "128",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        *TINY_MODEL,
    )
    assert code == 0, err
    assert "confusion.png" not in stdout and "best.pt (epoch 2)" in stdout

    def no_nan(name):
        raise AssertionError(f"results.json holds {name}")

    results = json.loads((out / "results.json").read_text(), parse_constant=no_nan)
    assert results["best_val_accuracy"] is None and results["best_epoch"] == 2
    assert "accuracy" not in results and not (out / "predictions.csv").exists()


def test_train_and_eval_a_peer_model(demo_run, tmp_path, capsys):
    out = tmp_path / "pn2"
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    code, stdout, err = _main(
        capsys,
        *_tiny_train(demo_run, out, 1),
        "--model",
        "pointnet2_ssg",
        "--augment",
        "scale:0.8:1.25",
        "shift:0.1",
        *common,
    )
    assert code == 0, err
    assert "pointnet2_ssg" in err + stdout
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["model"]["name"] == "pointnet2_ssg"
    code, stdout, err = _main(
        capsys, "eval", "--checkpoint", str(out / "best.pt"), *common[:2]
    )
    assert code == 0, err
    expected = json.loads((out / "results.json").read_text())
    assert json.loads(stdout)["accuracy"] == pytest.approx(expected["accuracy"])


# -- info, bench ----------------------------------------------------------------------


def test_info(capsys):
    code, out, _ = _main(capsys, "info")
    assert code == 0
    for key in (
        "itnet_geo",
        "torch",
        "WITH_TORCH_CLUSTER",
        "WITH_TORCH_SCATTER",
        "torch threads",
        "C++ compiler",
        "cache dir",
        "data dir",
    ):
        assert key in out


def test_info_says_when_compile_has_no_compiler(capsys, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    from itnet_geo.ops import fused

    monkeypatch.setattr(fused.shutil, "which", lambda name: None)
    code, out, _ = _main(capsys, "info")
    assert code == 0 and "none found (--compile stays eager)" in out


def test_builtin_bench(capsys):
    code, out, _ = _main(
        capsys,
        "bench",
        "--builtin",
        "--num-points",
        "64",
        "--batch-size",
        "2",
        "--seconds",
        "0.05",
    )
    assert code == 0
    result = json.loads(out)
    assert result["train_clouds_per_s"] > 0 and result["inference_clouds_per_s"] > 0


def test_bench_unknown_script(capsys):
    if cli._benchmark_dir() is None:
        pytest.skip("no benchmarks folder")
    code, _, err = _main(capsys, "bench", "no_such_benchmark")
    assert code == cli.EXIT_FAILURE and "no benchmark" in err


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_sigkilled_run_resumes_to_the_same_weights(tmp_path, processes):
    """A real kill -9 mid-run, then --resume: same final weights as no kill.

    With two processes (``--nproc 2``) the kill reaches the supervisor, whose
    workers stop with it; both ranks' random streams come back on resume.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, ITNET_GEO_CACHE=str(tmp_path / "cache"))

    def command(out, *extra):
        return [
            sys.executable,
            "-m",
            "itnet_geo",
            "train",
            "--dataset",
            "synthetic",
            "--root",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--synthetic-classes",
            "4",
            "--synthetic-train",
            "8",
            "--synthetic-test",
            "2",
            "--num-points",
            "128",
            "--epochs",
            "8",
            "--batch-size",
            "8",
            "--threads",
            "1",
            "--no-progress",
            "--nproc",
            str(processes),
            *TINY_MODEL,
            *extra,
        ]

    subprocess.run(
        command(tmp_path / "full"),
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        command(cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = cut / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["epoch"]
    assert 1 <= killed_at < 8
    # keeping epochs may be switched on when resuming: it changes no result
    subprocess.run(
        command(cut, "--resume", "--keep-epochs", "2"),
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    resumed = load_checkpoint(cut / "last.pt")
    assert resumed["epoch"] == full["epoch"] == 8
    for key, value in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    kept = sorted(p.name for p in (cut / "epochs").iterdir())
    assert kept == [f"epoch_{e:04d}.pt" for e in range(max(7, killed_at + 1), 9)]
    assert resumed["train"]["keep_epochs"] == 2


def test_nan_loss_exits_with_status_3(demo_run, tmp_path, capsys, monkeypatch):
    from itnet_geo.train import run as run_module

    real = run_module.make_model

    def nan_model(*args, **kwargs):
        model = real(*args, **kwargs)
        calls = [0]

        def hook(module, inputs, output):
            if module.training:
                calls[0] += 1
                if calls[0] > 3:  # 2 steps per epoch: NaN in epoch 2
                    return output * float("nan")
            return None

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(run_module, "make_model", nan_model)
    out = tmp_path / "run"
    code, stdout, err = _main(
        capsys,
        *_tiny_train(demo_run, out, 3),
        "--cache-dir",
        str(demo_run / "cache"),
        "--no-progress",
        *TINY_MODEL,
    )
    assert code == cli.EXIT_NAN
    assert "non-finite" in err and "last good checkpoint kept" in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("itnet-geo: error:")
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


@pytest.mark.parametrize(
    "env, reported",
    [
        ({}, True),  # a single process, or the launcher of `train --nproc`
        ({"RANK": "0"}, True),  # rank 0 under torchrun
        ({"RANK": "1"}, False),
        ({"RANK": "0", "ITNET_GEO_T0": "0"}, False),  # a worker of `train --nproc`
    ],
)
def test_a_stop_of_every_rank_is_reported_once(
    tmp_path, capsys, monkeypatch, env, reported
):
    # Ctrl-C and a non-finite loss stop every process of a DDP run: one line, not one
    # per process
    from itnet_geo.train import NonFiniteLossError

    for name in ("RANK", "ITNET_GEO_T0"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "last.pt").write_bytes(b"")
    stops = {
        cli.EXIT_INTERRUPTED: (
            KeyboardInterrupt(),
            f"itnet-geo: interrupted; continue with: itnet-geo train --out {tmp_path} "
            "--resume\n",
        ),
        cli.EXIT_NAN: (
            NonFiniteLossError("training loss became non-finite", 2, 7, None),
            "itnet-geo: error: training loss became non-finite\n",
        ),
    }
    for status, (error, report) in stops.items():

        def stopped(args, clock_start, error=error):
            raise error

        monkeypatch.setattr(cli, "_cmd_train", stopped)
        code, _, err = _main(capsys, "train", "--out", str(tmp_path), "--resume")
        assert code == status
        assert err == (report if reported else "")


def test_keep_epochs_then_average_then_eval(demo_run, tmp_path, capsys, monkeypatch):
    from itnet_geo.train import average as average_module

    out = tmp_path / "run"
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    code, _, err = _main(
        capsys,
        *_tiny_train(demo_run, out, 3),
        "--keep-epochs",
        "2",
        *TINY_MODEL,
        *common,
    )
    assert code == 0, err
    kept = sorted((out / "epochs").iterdir())
    assert [p.name for p in kept] == ["epoch_0002.pt", "epoch_0003.pt"]
    epochs = [load_checkpoint(p) for p in kept]
    last = load_checkpoint(out / "last.pt")
    assert [c["kind"] for c in epochs] == ["epoch", "epoch"]
    assert set(last) - set(epochs[1]) == set(TRAINING_STATE)
    for key, value in last["state_dict"].items():
        assert torch.equal(epochs[1]["state_dict"][key], value), key

    real = average_module.recalibrate_batchnorm
    seen = []

    def recording(model, loader, *args, **kwargs):
        seen.extend(batch.y.clone() for batch in loader)
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(average_module, "recalibrate_batchnorm", recording)
    avg = tmp_path / "average.pt"
    code, stdout, err = _main(
        capsys,
        "average",
        *map(str, kept),
        "--out",
        str(avg),
        "--cache-dir",
        str(demo_run / "cache"),
    )
    assert code == 0, err
    line = json.loads(stdout)
    assert line["out"] == str(avg) and line["epochs"] == [2, 3]
    assert line["files"] == ["epoch_0002.pt", "epoch_0003.pt"]
    assert line["batchnorm_layers"] > 0 and line["batchnorm_shapes"] > 0
    # batch-norm batches drawn as in training: the run's size, classes mixed (the
    # shapes are stored class by class)
    labels = torch.cat(seen)
    assert len(seen[0]) == 8 and len(labels) == line["batchnorm_shapes"]
    assert not torch.equal(labels, labels.sort().values)
    ckpt = load_checkpoint(avg)
    assert ckpt["kind"] == "average" and not set(ckpt) & set(TRAINING_STATE)
    assert ckpt["classes"] == last["classes"] and ckpt["model"] == last["model"]
    # weights: the mean; batch-norm statistics: measured again, not averaged
    first, second = (c["state_dict"] for c in epochs)
    for key, value in ckpt["state_dict"].items():
        mean = (first[key].double() + second[key].double()) / 2
        if key.endswith((".running_mean", ".running_var")):
            assert not torch.allclose(value.double(), mean), key
        elif value.is_floating_point():
            torch.testing.assert_close(value.double(), mean, rtol=1e-6, atol=1e-7)

    code, stdout, err = _main(
        capsys, "eval", "--checkpoint", str(avg), "--split", "test", *common[:2]
    )
    assert code == 0, err
    assert json.loads(stdout)["n"] == 8


def test_average_epochs_scores_the_average_and_resume_averages_again(
    demo_run, tmp_path, capsys
):
    out = tmp_path / "run"
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    stdout = _train_smoke(capsys, demo_run, out, 3, "--average-epochs", "2")
    assert "test accuracy of average.pt (epochs 2-3):" in stdout
    assert "average.pt (epochs 2-3)" in stdout.splitlines()[-1]
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"] == str(out / "average.pt")
    assert results["averaged_epochs"] == [2, 3]
    average = load_checkpoint(out / "average.pt")
    assert average["kind"] == "average" and average["averaged"]["epochs"] == [2, 3]
    code, stdout, err = _main(
        capsys,
        "eval",
        "--checkpoint",
        str(out / "average.pt"),
        "--split",
        "test",
        *common[:2],
    )
    assert code == 0, err
    assert json.loads(stdout)["accuracy"] == results["accuracy"]
    # killed while averaging: the resumed run trains no further and averages again
    (out / "average.pt").unlink()
    code, stdout, err = _main(capsys, "train", "--out", str(out), "--resume", *common)
    assert code == 0, err
    again = load_checkpoint(out / "average.pt")
    assert again["averaged"] == average["averaged"]
    for key, value in average["state_dict"].items():
        assert torch.equal(again["state_dict"][key], value), key
    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    assert json.loads((out / "results.json").read_text()) == {
        **results,
        "elapsed_s": pytest.approx(results["elapsed_s"], abs=60),
    }


def test_init_starts_from_a_checkpoints_weights(demo_run, tmp_path, capsys):
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    first = tmp_path / "first"
    _train_smoke(capsys, demo_run, first, 2)
    source = load_checkpoint(first / "last.pt")
    # a rate too small to move the weights: the run starts where the source ended
    tuned = tmp_path / "tuned"
    init = ["--init", str(first / "last.pt")]
    code, _, err = _main(
        capsys, *_tiny_train(demo_run, tuned, 1), *init, "--lr", "1e-12", *common
    )
    assert code == 0, err
    last = load_checkpoint(tuned / "last.pt")
    assert last["model"] == source["model"] and last["epoch"] == 1
    assert last["train"]["init"] == str(first / "last.pt")
    assert "starting from" in (tuned / "train.log").read_text()
    params = dict(build_model(source["model"]).named_parameters())
    for key in params:
        torch.testing.assert_close(last["state_dict"][key], source["state_dict"][key])
    # the model comes from the checkpoint: no model flags, same classes
    code, _, err = _main(
        capsys, *_tiny_train(demo_run, tmp_path / "x", 1), *init, *TINY_MODEL, *common
    )
    assert code == 1 and "drop --model-preset" in err
    other = tmp_path / "other.pt"
    save_checkpoint(other, {**source, "classes": ["a", "b", "c", "d"]})
    code, _, err = _main(
        capsys,
        *_tiny_train(demo_run, tmp_path / "y", 1),
        "--init",
        str(other),
        *common,
    )
    assert code == 1 and f"{other} was trained on other classes" in err


def test_train_points_resample_and_eval_reads_the_same_validation(
    demo_run, tmp_path, capsys
):
    from itnet_geo.train import evaluate_checkpoint

    out = tmp_path / "run"
    _train_smoke(capsys, demo_run, out, 2, "--train-points", "256")
    best = load_checkpoint(out / "best.pt")
    assert best["data"]["train_points"] == 256 and best["data"]["num_points"] == 128
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    record = next(r for r in records if r["epoch"] == best["epoch"])
    # `eval --split val` scores the validation shapes as training did: one fixed
    # draw of 128 of their 256 points
    cache = demo_run / "cache"
    res = evaluate_checkpoint(out / "best.pt", split="val", cache_dir=cache)
    assert res.loss == pytest.approx(record["val_loss"], rel=1e-5)
    assert res.accuracy == record["val_acc"]


def test_an_average_counts_as_the_epochs_it_averages(demo_run, tmp_path, capsys):
    from itnet_geo.train import average_checkpoints

    out = tmp_path / "run"
    _train_smoke(capsys, demo_run, out, 4, "--keep-epochs", "3")
    two, three, four = sorted((out / "epochs").iterdir())
    kw = {"cache_dir": demo_run / "cache"}
    average_checkpoints([two, three], tmp_path / "part.pt", **kw)
    extended = average_checkpoints(
        [tmp_path / "part.pt", four], tmp_path / "a.pt", **kw
    )
    direct = average_checkpoints([two, three, four], tmp_path / "b.pt", **kw)
    assert extended["averaged"]["epochs"] == direct["averaged"]["epochs"] == [2, 3, 4]
    params = dict(build_model(direct["model"]).named_parameters())
    for key in params:  # (batch-norm statistics are measured again, not averaged)
        torch.testing.assert_close(
            extended["state_dict"][key], direct["state_dict"][key]
        )


def test_average_refuses_checkpoints_of_different_models(demo_run, tmp_path, capsys):
    common = ["--cache-dir", str(demo_run / "cache"), "--no-progress"]
    runs = []
    for name, preset in (("a", "smoke"), ("b", "default")):
        out = tmp_path / name
        argv = _tiny_train(demo_run, out, 1) + ["--model-preset", preset]
        code, _, err = _main(capsys, *argv, *common)
        assert code == 0, err
        runs.append(str(out / "best.pt"))
    code, _, err = _main(capsys, "average", *runs, "--out", str(tmp_path / "x.pt"))
    assert code == cli.EXIT_FAILURE
    assert "not the same model" in err and runs[1] in err
    assert not (tmp_path / "x.pt").exists()


def test_compare_reads_a_run_directory_and_its_last_checkpoint(
    demo_run, tmp_path, capsys
):
    run = demo_run / "run"
    png = tmp_path / "cmp.png"
    argv = ["compare", str(run), str(run / "last.pt"), "--labels", "dir", "ckpt"]
    code, out, err = _main(capsys, *argv, "--out", str(png), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["run"] for r in rows] == ["dir", "ckpt"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert rows[0] == {**rows[1], "run": "dir"}
    assert rows[0]["epochs"] == history[-1]["epoch"]
    assert rows[0]["best"] == max(h["val_acc"] for h in history)
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = _main(capsys, "compare", str(run), "--last", "1")
    assert code == 0 and out.startswith("| run | epochs |")
    assert f"\n| run | {rows[0]['epochs']} |" in out  # a row named by its directory
    code, _, err = _main(capsys, "compare", str(run / "best.pt"))
    assert code == cli.EXIT_FAILURE
    assert "best.pt carries no training history" in err


def test_compile_flag_compiles_the_neighbourhood_sums(tmp_path, capsys, cxx):
    from itnet_geo.ops import compile_enabled, set_compile

    try:
        code, out, _ = _main(
            capsys,
            "demo",
            "--smoke",
            "--compile",
            "--out",
            str(tmp_path / "run"),
            "--root",
            str(tmp_path / "data"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
        )
        assert compile_enabled()
    finally:
        set_compile(False)
    assert code == 0 and "test accuracy" in out
    log = (tmp_path / "run" / "train.log").read_text()
    assert "thread(s), compiled neighbourhood sums" in log
