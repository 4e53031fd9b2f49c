"""DDP on CPU: two processes, gloo, the real training loop."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _train_fakes import Blobs, TinyNet

from itnet_geo.train import TrainConfig, fit, load_checkpoint
from itnet_geo.train.distributed import supervise


def _worker(rank, world_size, init_file, tmp):
    tmp = Path(tmp)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        out = {}
        # One step: 6 shapes, 3 per rank, batch 4 -> a single step per epoch.
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast
        model = TinyNet()
        one = Blobs(per_class=2)
        cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2)
        res = fit(
            model, one, None, cfg, tmp / f"one{rank}", one.classes, progress=False
        )
        out["one_steps"] = res.steps
        out["one"] = {k: v.clone() for k, v in model.state_dict().items()}
        # A few epochs: the loss falls.
        torch.manual_seed(rank)
        model = TinyNet()
        train, val = Blobs(per_class=8), Blobs(per_class=3, seed=1)
        cfg = TrainConfig(epochs=6, batch_size=4, lr=1e-2, label_smoothing=0.0)
        res = fit(
            model, train, val, cfg, tmp / f"run{rank}", train.classes, progress=False
        )
        out["many"] = {k: v.clone() for k, v in model.state_dict().items()}
        out["losses"] = [h["train_loss"] for h in res.history]
        out["val"] = [h["val_acc"] for h in res.history]
        out["steps_per_epoch"] = res.steps // res.epochs
        torch.save(out, tmp / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_gloo(tmp_path):
    mp.spawn(
        _worker,
        args=(2, str(tmp_path / "init"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0 = torch.load(tmp_path / "result0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "result1.pt", weights_only=True)
    assert r0["one_steps"] == r1["one_steps"] == 1
    for key in r0["one"]:
        assert torch.equal(r0["one"][key], r1["one"][key]), key
    for key in r0["many"]:
        assert torch.equal(r0["many"][key], r1["many"][key]), key
    # 24 shapes over 2 ranks, batch 4: 3 steps per epoch and rank
    assert r0["steps_per_epoch"] == 3
    assert r0["losses"] == r1["losses"]  # reduced over ranks
    assert r0["losses"][-1] < r0["losses"][0]
    assert r0["val"] == r1["val"]
    # only rank 0 writes
    assert not (tmp_path / "run1").exists() and not (tmp_path / "one1").exists()
    last = load_checkpoint(tmp_path / "run0" / "last.pt")
    assert last["world_size"] == 2 and len(last["rng"]) == 2
    for key, value in last["state_dict"].items():
        assert torch.equal(value, r0["many"][key])


def _tiny_run(tmp_path, epochs, batch_size):
    """Training options for a few tiny synthetic shapes and a tiny model."""
    return [
        "--dataset",
        "synthetic",
        "--root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
        "--synthetic-classes",
        "3",
        "--synthetic-train",
        "6",
        "--synthetic-test",
        "2",
        "--num-points",
        "64",
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--no-progress",
        "--model-preset",
        "smoke",
    ]


@pytest.mark.slow
def test_torchrun_module_entry(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    env = dict(os.environ, OMP_NUM_THREADS="1", ITNET_GEO_CACHE=str(tmp_path / "c"))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "itnet_geo.train"]
    cmd += _tiny_run(tmp_path, epochs=2, batch_size=4)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test accuracy" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2


def _cli_nproc_2(tmp_path, epochs, *extra):
    """`itnet-geo train --nproc 2` on the tiny run, the batch of 8 split into 4s."""
    env = dict(os.environ, ITNET_GEO_CACHE=str(tmp_path / "c"))
    cmd = [sys.executable, "-m", "itnet_geo.cli", "train", "--nproc", "2"]
    cmd += _tiny_run(tmp_path, epochs=epochs, batch_size=8) + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cli_nproc_trains_ddp_within_a_time_budget(tmp_path):
    # two local gloo processes, the time budget planned on both ranks alike
    proc = _cli_nproc_2(tmp_path, 2, "--time-budget", "10m")
    assert "test accuracy" in proc.stdout
    assert proc.stderr.count("time budget 600 s") == 1  # logged by rank 0 only
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 2
    assert ckpt["train"]["batch_size"] == 4
    assert ckpt["budget"]["total_steps"] == ckpt["step"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 < results["elapsed_s"] < 600
    # each rank scored every other test shape; the table has them all, in order
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [row["name"] for row in rows]
    assert len(names) == results["n"] == 6 and names == sorted(set(names))
    correct = sum(int(row["correct"]) for row in rows)
    assert correct / 6 == pytest.approx(results["accuracy"])


def test_cli_nproc_averages_the_last_epochs_on_rank_0(tmp_path):
    proc = _cli_nproc_2(tmp_path, 3, "--average-epochs", "2")
    # rank 0 averages while rank 1 waits, then both score average.pt
    assert "test accuracy of average.pt (epochs 2-3)" in proc.stdout
    assert proc.stderr.count("averaged the weights of epochs 2-3") == 1
    average = load_checkpoint(tmp_path / "run" / "average.pt")
    assert average["averaged"]["epochs"] == [2, 3]
    assert average["train"]["batch_size"] == 4  # batch norm measured per process


def test_cli_nproc_rejects_a_batch_that_does_not_split(tmp_path, capsys):
    from itnet_geo import cli

    argv = ["train", "--nproc", "3"] + _tiny_run(tmp_path, epochs=1, batch_size=8)
    assert cli.main(argv) == 1
    assert "does not split evenly over --nproc 3" in capsys.readouterr().err
    assert cli.main(["train", "--nproc", "0", "--out", str(tmp_path)]) == 1


def _python(code):
    return subprocess.Popen([sys.executable, "-c", code])


def test_supervise_waits_for_every_worker():
    procs = [_python("import time; time.sleep(0.5)"), _python("pass")]
    assert supervise(procs, poll=0.05) == 0
    assert [proc.returncode for proc in procs] == [0, 0]


def test_supervise_stops_the_others_when_one_fails():
    # the survivor would otherwise wait in its next collective for 30 minutes
    sleeper = _python("import time; time.sleep(120)")
    start = time.monotonic()
    assert supervise([sleeper, _python("import sys; sys.exit(3)")], poll=0.05) == 3
    assert time.monotonic() - start < 60
    assert sleeper.returncode == -signal.SIGTERM


def test_supervise_reports_death_by_signal_as_a_shell_does():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert supervise([_python(code)], poll=0.05) == 128 + signal.SIGKILL


def _restore_sigint():  # a background shell starts its children with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_a_long_nproc_run(tmp_path):
    """`itnet-geo train --nproc 2` in its own process group, once last.pt exists."""
    env = dict(os.environ, ITNET_GEO_CACHE=str(tmp_path / "c"))
    cmd = [sys.executable, "-m", "itnet_geo.cli", "train", "--nproc", "2"]
    cmd += _tiny_run(tmp_path, epochs=1000, batch_size=8)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=_restore_sigint,
    )
    last = tmp_path / "run" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    return proc


def test_kill_of_cli_nproc_stops_its_workers(tmp_path):
    proc = _start_a_long_nproc_run(tmp_path)
    proc.terminate()  # SIGTERM to the launcher alone
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    with pytest.raises(ProcessLookupError):  # no worker is left behind
        os.killpg(proc.pid, 0)


def _living_members(group: int) -> list[int]:
    """Processes of process group :obj:`group` that are not zombies (Linux /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while being read
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigkill_of_cli_nproc_takes_its_workers_with_it(tmp_path):
    proc = _start_a_long_nproc_run(tmp_path)
    assert len(_living_members(proc.pid)) == 3  # the launcher and two workers
    proc.kill()  # SIGKILL: the launcher can forward nothing
    proc.wait()
    deadline = time.monotonic() + 60
    while _living_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = _living_members(proc.pid)
    for pid in orphans:  # a failing run must not leave them training
        os.kill(pid, signal.SIGKILL)
    assert orphans == []


def test_ctrl_c_on_cli_nproc_stops_every_process_with_one_report(tmp_path):
    # Ctrl-C in a terminal: SIGINT to the launcher and both workers at once
    proc = _start_a_long_nproc_run(tmp_path)
    last = tmp_path / "run" / "last.pt"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    reports = [line for line in err.splitlines() if "interrupted" in line]
    assert reports == [
        f"itnet-geo: interrupted; continue with: itnet-geo train --out "
        f"{tmp_path / 'run'} --resume"
    ]
    assert load_checkpoint(last)["world_size"] == 2
    with pytest.raises(ProcessLookupError):  # no worker is left behind
        os.killpg(proc.pid, 0)
