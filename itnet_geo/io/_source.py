"""Shared checks for the readers: loading bytes, parsing tokens, validating arrays.

Everything here raises :class:`~itnet_geo.io.errors.ReadError` with the file, the
line (text) or byte offset (binary), and what was expected.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from itnet_geo.io.errors import ReadError

_F32_MAX = float(np.finfo(np.float32).max)


def read_bytes(path: str | os.PathLike) -> bytes:
    """Return the file's bytes; :class:`ReadError` if missing, unreadable or empty."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ReadError(path, "is a directory, not a file") from None
    except OSError as exc:
        raise ReadError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ReadError(path, "empty file")
    return data


def file_size(path: str | os.PathLike) -> int:
    """Size in bytes of a readable, non-empty file, or :class:`ReadError`."""
    try:
        size = Path(path).stat().st_size
        if Path(path).is_dir():
            raise ReadError(path, "is a directory, not a file")
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ReadError(path, "no such file") from None
    except OSError as exc:
        raise ReadError(path, f"cannot read file: {exc.strerror or exc}") from None
    if size == 0:
        raise ReadError(path, "empty file")
    return size


def text_lines(data: bytes) -> list[str]:
    """Split decoded text into lines; index ``i`` is line ``i + 1``.

    Undecodable bytes become U+FFFD, so they only fail where a number is expected
    (with the line number), never in a comment.
    """
    return data.decode("utf-8-sig", errors="replace").split("\n")


def parse_int(path, token: str, line: Optional[int], what: str) -> int:
    """Parse one integer token, naming ``what`` and the line on failure."""
    try:
        return int(token)
    except ValueError:
        raise ReadError(
            path, f"expected an integer {what}, got {token!r}", line
        ) from None


def parse_float_rows(
    path, rows: Sequence[Sequence[str]], lines: Sequence[int], what: str
) -> np.ndarray:
    """Parse equally long rows of numbers into a float64 ``(len(rows), k)`` array.

    Args:
        path: The file, for errors.
        rows: Token rows, all of the same length ``k``.
        lines: 1-based line number of each row.
        what: What a value is (``"vertex coordinate"``), for errors.
    """
    width = len(rows[0]) if rows else 0
    flat = [tok for row in rows for tok in row]
    try:
        arr = np.array(flat, dtype=np.float64)
    except (ValueError, OverflowError):  # find the culprit, token by token
        arr = np.array(
            [
                _token(path, tok, line, float, f"a number ({what})")
                for row, line in zip(rows, lines, strict=True)
                for tok in row
            ],
            dtype=np.float64,
        )
    return arr.reshape(len(rows), width)


def parse_int_rows(
    path, rows: Sequence[Sequence[str]], lines: Sequence[int], what: str
) -> np.ndarray:
    """Parse equally long rows of integers into an int64 ``(len(rows), k)`` array."""
    width = len(rows[0]) if rows else 0
    flat = [tok for row in rows for tok in row]
    try:
        arr = np.array(flat, dtype=np.int64)
    except (ValueError, OverflowError):  # find the culprit, token by token
        values = []
        for row, line in zip(rows, lines, strict=True):
            for tok in row:
                value = _token(path, tok, line, int, f"an integer {what}")
                if not -(2**63) <= value < 2**63:
                    raise ReadError(
                        path, f"{what} {tok[:40]} is out of range", line
                    ) from None
                values.append(value)
        arr = np.array(values, dtype=np.int64)
    return arr.reshape(len(rows), width)


def _token(path, token: str, line: int, kind, expected: str):
    try:
        return kind(token)
    except ValueError:
        raise ReadError(
            path, f"expected {expected}, got {token[:40]!r}", line
        ) from None


def check_finite(
    path,
    values: np.ndarray,
    what: str,
    lines: Optional[Sequence[int]] = None,
    offsets: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Cast ``(N, k)`` values to float32 and reject NaN, inf and float32 overflow.

    The first bad row is reported by its line (``lines``) or byte offset
    (``offsets``), whichever is given.
    """
    values = np.asarray(values)
    with np.errstate(over="ignore", invalid="ignore"):
        as32 = values.astype(np.float32)
    finite = np.isfinite(as32).reshape(len(as32), -1)
    if finite.all():
        return as32
    row = int(np.flatnonzero(~finite.all(axis=1))[0])
    col = int(np.flatnonzero(~finite[row])[0])
    bad = float(values.reshape(len(values), -1)[row, col])
    if np.isfinite(bad):
        reason = f"{what} {bad!r} overflows float32"
    else:
        reason = f"non-finite {what} {bad!r}"
    line = int(lines[row]) if lines is not None else None
    offset = int(offsets[row]) if offsets is not None else None
    if line is None and offset is None:
        reason = f"{reason} (row {row})"
    raise ReadError(path, reason, line=line, offset=offset)


def check_indices(
    path,
    index: np.ndarray,
    num_vertices: int,
    lines: Optional[Sequence[int]] = None,
    offsets: Optional[np.ndarray] = None,
) -> None:
    """Reject face indices outside ``[0, num_vertices)`` (rows of ``index``)."""
    if index.size == 0:
        return
    bad = (index < 0) | (index >= num_vertices)
    if not bad.any():
        return
    rows = bad.reshape(len(bad), -1).any(axis=1)
    row = int(np.flatnonzero(rows)[0])
    value = int(index.reshape(len(index), -1)[row][bad.reshape(len(bad), -1)[row]][0])
    if value < 0:
        reason = f"face index {value} is negative"
    else:
        reason = (
            f"face index {value} is past the vertex list "
            f"({num_vertices} vertices, 0-based)"
        )
    line = int(lines[row]) if lines is not None else None
    offset = int(offsets[row]) if offsets is not None else None
    if line is None and offset is None:
        reason = f"{reason} (face {row})"
    raise ReadError(path, reason, line=line, offset=offset)


def triangulate(polygons: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons (each of at least 3 indices) to ``(F, 3)`` int64.

    Polygon ``[a, b, c, d, ...]`` becomes ``[a, b, c], [a, c, d], ...``; the
    triangles of each polygon are contiguous and in file order.
    """
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        size = polygons.shape[1]
        sizes = np.full(len(polygons), size, dtype=np.int64)
        flat = polygons.astype(np.int64, copy=False).reshape(-1)
    else:
        if len(polygons) == 0:
            return np.zeros((0, 3), dtype=np.int64)
        sizes = np.fromiter(map(len, polygons), dtype=np.int64, count=len(polygons))
        flat = np.fromiter(
            itertools.chain.from_iterable(polygons),
            dtype=np.int64,
            count=int(sizes.sum()),
        )
    if (sizes == 3).all():
        return flat.reshape(-1, 3)
    per_polygon = sizes - 2
    first = (np.cumsum(sizes) - sizes).repeat(per_polygon)
    corner = np.arange(int(per_polygon.sum())) - (
        np.cumsum(per_polygon) - per_polygon
    ).repeat(per_polygon)
    return np.stack(
        [flat[first], flat[first + corner + 1], flat[first + corner + 2]], axis=1
    )
