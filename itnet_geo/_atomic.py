r"""Atomic file writes: a temporary file beside the target, renamed over it.

Every file itnet_geo writes that a reader or a resumed run may open (checkpoints,
metrics, results, plots, predictions, the dataset cache) goes through
:func:`atomic_open`, so a reader sees the old file or the whole new one and a run
killed mid-write leaves no half-written file under the real name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    durable: bool = False,
    **kwargs: Any,
) -> Iterator[IO[Any]]:
    r"""Open a temporary file to be renamed over :obj:`path` when the block ends.

    The file is ``.<name>.<pid>.tmp`` in :obj:`path`'s folder (created if
    missing): the same file system, so :func:`os.replace` is atomic, and one
    name per process. It is opened with :func:`open` (:obj:`mode` and
    :obj:`kwargs`), so its permissions follow the umask like any other file.
    If the block raises, the temporary file is removed and :obj:`path` is left
    as it was.

    Args:
        path (str or os.PathLike): The file to write.
        mode (str, optional): A write mode, ``"wb"`` or ``"w"``.
            (default: :obj:`"wb"`)
        durable (bool, optional): Flush the data to disk (``fsync``) before the
            rename, so the new file survives a power cut as well as a crash.
            (default: :obj:`False`)
        **kwargs: Passed to :func:`open` (``encoding``, ``newline``).
    """
    if "w" not in mode:
        raise ValueError(
            f"atomic_open writes a new file: mode must contain 'w', got {mode!r}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(
    path: str | os.PathLike, payload: bytes | str, durable: bool = False
) -> Path:
    r"""Write :obj:`payload` to :obj:`path` through :func:`atomic_open`.

    Text is written as UTF-8.

    Returns:
        pathlib.Path: :obj:`path`.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(payload)
    return Path(path)


__all__ = ["atomic_open", "write_atomic"]
