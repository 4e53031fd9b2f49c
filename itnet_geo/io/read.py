"""One entry point for every supported format: :func:`read` dispatches on extension."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from itnet_geo.io.errors import ReadError
from itnet_geo.io.h5 import read_h5
from itnet_geo.io.npy import read_npy
from itnet_geo.io.obj import read_obj
from itnet_geo.io.off import read_off
from itnet_geo.io.pcd import read_pcd
from itnet_geo.io.ply import read_ply
from itnet_geo.io.record import Record
from itnet_geo.io.txt import read_txt

_READERS: dict[str, Callable[[str | os.PathLike], Record]] = {
    ".off": read_off,
    ".obj": read_obj,
    ".ply": read_ply,
    ".pcd": read_pcd,
    ".npy": read_npy,
    ".txt": read_txt,
    ".csv": read_txt,
    ".h5": read_h5,
    ".hdf5": read_h5,
}

SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_READERS)


def read(path: str | os.PathLike) -> Record:
    r"""Read one geometry file into a :class:`Record` of numpy arrays.

    The reader is chosen by the file extension, case-insensitively (see
    :data:`SUPPORTED_EXTENSIONS`): ``.off``, ``.obj``, ``.ply``, ``.pcd``, ``.npy``,
    ``.txt``, ``.csv``, ``.h5``, ``.hdf5``.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` (float32), ``face`` (int64 triangles or :obj:`None`),
        ``normal`` (float32 or :obj:`None`), ``label`` (int64, batch files only).

    Shapes:
        - **pos:** :math:`(N, 3)`; :math:`(S, N, 3)` for ``.h5`` batches
        - **face:** :math:`(F, 3)`
        - **normal:** as **pos**
        - **label:** :math:`(S,)`

    Raises:
        ReadError: For an unknown extension, a missing file or any malformed
            content; ``str(error)`` reads ``"file.off: line 3: expected 3 vertex
            coordinates, got 2"``.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "tri.off"
        >>> _ = f.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
        >>> rec = read(f)
        >>> rec.pos.shape, rec.face.tolist()
        ((3, 3), [[0, 1, 2]])
    """
    suffix = Path(path).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise ReadError(
            path,
            f"unsupported file extension {suffix or '(none)'!r}; expected one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}",
        )
    return reader(path)
