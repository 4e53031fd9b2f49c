r"""DDP helpers: joining, ranks, reductions, and a local launcher for ``--nproc``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

#: Set by :func:`launch_local` for its workers: the launcher's process id.
LAUNCHER_PID = "ITNET_GEO_LAUNCHER_PID"


@dataclass(frozen=True)
class DistInfo:
    r"""Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    r"""Join the process group described by ``torchrun``'s environment, if any.

    Reads ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` (set by ``torchrun``); with a
    world size above one it initialises the default group: ``gloo`` on CPU,
    ``nccl`` when CUDA is available, unless :obj:`backend` says otherwise. Without
    those variables it returns a single-process :class:`DistInfo`.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return dist_info()


def dist_info() -> DistInfo:
    r"""The current rank and world size (a single process when not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def barrier() -> None:
    r"""Wait for every rank (a no-op in a single process)."""
    if dist_info().enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    r"""Sum of :obj:`tensor` over ranks (in place; returned for chaining)."""
    if dist_info().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_tensor(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    r"""Rank :obj:`src`'s :obj:`tensor` on every rank (in place)."""
    if dist_info().enabled:
        dist.broadcast(tensor, src=src)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    r"""Rank :obj:`src`'s :obj:`obj` on every rank."""
    if not dist_info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    r"""Every rank's :obj:`obj`, in rank order, on every rank."""
    info = dist_info()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup_distributed() -> None:
    r"""Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_status(code: int) -> int:
    # Popen reports death by signal N as -N; a shell says 128 + N.
    return 128 - code if code < 0 else code


def _stop(procs: Sequence[subprocess.Popen], sig: int, grace: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(procs: Sequence[subprocess.Popen], poll: float = 0.2) -> int:
    r"""Wait for the worker processes of one run; their exit status.

    All succeed: 0. One fails: the others are stopped (they would wait for it in
    their next collective until gloo's 30-minute timeout) and its status is returned.
    Interrupted (Ctrl-C reaches the workers too, being in the same process group):
    the workers get 5 s to stop on their own, then ``SIGINT``, then ``SIGKILL``,
    and :class:`KeyboardInterrupt` is raised again for the caller to report.
    """
    try:
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                _stop(procs, signal.SIGTERM, grace=30.0)
                return _exit_status(failed[0])
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        try:
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(poll)
            _stop(procs, signal.SIGINT, grace=30.0)
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            for proc in procs:
                proc.kill()
        raise


def watch_launcher(poll: float = 1.0) -> bool:
    r"""In a worker of :func:`launch_local`: end this process when the launcher ends.

    A launcher killed by ``SIGKILL`` (``kill -9``, the out-of-memory killer) cannot
    stop its workers; they would train on, orphaned, writing into the run folder a
    ``--resume`` then shares with them. A daemon thread checks once every
    :obj:`poll` seconds that this process's parent is still the launcher and sends
    this process ``SIGTERM`` when it is not. Returns whether the watch started (only
    in a process :func:`launch_local` started).
    """
    pid = os.environ.get(LAUNCHER_PID)
    if pid is None:
        return False
    launcher = int(pid)

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(poll)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
    return True


def launch_local(
    argv: Sequence[str], nproc: int, env: Mapping[str, str] | None = None
) -> int:
    r"""Run ``python -m itnet_geo.cli *argv`` as :obj:`nproc` DDP processes here.

    What ``torchrun --standalone --nproc_per_node=nproc`` does for this library,
    without its agent: the workers get ``MASTER_ADDR``/``MASTER_PORT`` (a free local
    port), ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` and are watched by
    :func:`supervise`, so a failure or Ctrl-C ends the whole run with one report,
    and by :func:`watch_launcher` in each worker, so that a launcher killed outright
    takes them with it. Returns the run's exit status.
    """
    base = dict(os.environ if env is None else env)
    base.update(
        {LAUNCHER_PID: str(os.getpid())},
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(_free_port()),
        WORLD_SIZE=str(nproc),
        LOCAL_WORLD_SIZE=str(nproc),
    )
    cmd = [sys.executable, "-u", "-m", "itnet_geo.cli", *argv]
    procs: list[subprocess.Popen] = []

    def forward_sigterm(signum: int, frame: Any) -> None:  # `kill` of this process
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward_sigterm) if main_thread else None
    try:
        for rank in range(nproc):
            worker_env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank))
            procs.append(subprocess.Popen(cmd, env=worker_env))
        return supervise(procs)
    except BaseException:
        _stop(procs, signal.SIGTERM, grace=10.0)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


__all__ = [
    "DistInfo",
    "init_distributed",
    "dist_info",
    "barrier",
    "all_reduce_sum",
    "broadcast_tensor",
    "broadcast_object",
    "gather_objects",
    "cleanup_distributed",
    "launch_local",
    "supervise",
    "watch_launcher",
]
