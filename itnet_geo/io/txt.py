"""Delimited text point clouds (``.txt``, ``.csv``): ``x y z [nx ny nz]`` per row."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from itnet_geo.io._source import check_finite, parse_float_rows, read_bytes, text_lines
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record


def read_txt(path: str | os.PathLike) -> Record:
    r"""Read a point cloud of one point per line (``modelnet40_normal_resampled``).

    Rows are ``x,y,z,nx,ny,nz`` or ``x,y,z``, separated by commas (spaces around
    them allowed) or by whitespace; every row must have the same number of columns.
    Blank lines and ``#`` comments are skipped. Columns ``3:6`` are normals.

    Args:
        path (str or os.PathLike): The file (``.txt`` or ``.csv``).

    Returns:
        Record: ``pos`` :math:`(N, 3)` and ``normal`` :math:`(N, 3)` or :obj:`None`.

    Raises:
        ReadError: On a missing, empty or malformed file, naming the line.
    """
    data = read_bytes(path)
    regular = _read_regular(data)
    if regular is not None:
        return regular
    # line by line, to name the line of the first problem
    rows: list[list[str]] = []
    lines: list[int] = []
    for number, text in enumerate(text_lines(data), start=1):
        hash_at = text.find("#")
        if hash_at >= 0:
            text = text[:hash_at]
        if "," in text:
            tokens = [tok.strip() for tok in text.split(",")]
            if "" in tokens:
                raise ReadError(path, "empty field between commas", number)
        else:
            tokens = text.split()
            if not tokens:
                continue
        if rows and len(tokens) != len(rows[0]):
            raise ReadError(
                path,
                f"expected {len(rows[0])} values per row (as on line {lines[0]}), "
                f"got {len(tokens)}",
                number,
            )
        if not rows and len(tokens) not in (3, 6):
            raise ReadError(
                path,
                f"expected 3 (x y z) or 6 (x y z nx ny nz) values, got {len(tokens)}",
                number,
            )
        rows.append(tokens)
        lines.append(number)
    if not rows:
        raise ReadError(path, "no data (empty or only comments)")
    values = parse_float_rows(path, rows, lines, "coordinate")
    pos = check_finite(path, values[:, :3], "coordinate", lines=lines)
    normal = None
    if values.shape[1] == 6:
        normal = check_finite(path, values[:, 3:], "normal", lines=lines)
    return Record(pos=pos, normal=normal)


def _read_regular(data: bytes) -> Record | None:
    """Parse the well-formed common case in C (np.loadtxt); None: "check slowly".

    Only a result the line-by-line path would also accept is returned: equal
    columns (3 or 6), all numeric, all finite in float32.
    """
    text = data.decode("utf-8-sig", errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "input contained no data"
            values = np.loadtxt(
                io.StringIO(text),
                delimiter="," if "," in text else None,
                ndmin=2,
                dtype=np.float64,
            )
    except Exception:  # any complaint: let the slow path find and name it
        return None
    if len(values) == 0 or values.shape[1] not in (3, 6):
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = values.astype(np.float32)
    if not np.isfinite(as32).all():
        return None
    normal = as32[:, 3:] if values.shape[1] == 6 else None
    return Record(pos=as32[:, :3], normal=normal)
