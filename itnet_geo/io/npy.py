"""NumPy ``.npy`` point-cloud reader (xyz or xyz + normals, no pickles)."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from itnet_geo.io._source import check_finite, read_bytes
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record


def read_npy(path: str | os.PathLike) -> Record:
    r"""Read a point cloud stored as an ``(N, 3)`` or ``(N, 6)`` ``.npy`` array.

    The header is parsed and the data size checked against the file before anything
    is allocated; object arrays (pickles) are refused. Columns ``3:6`` of an
    ``(N, 6)`` array are normals.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(N, 3)` and ``normal`` :math:`(N, 3)` or :obj:`None`.

    Raises:
        ReadError: On a missing, truncated or malformed file, or a wrong shape or
            dtype, naming the byte offset where it applies.
    """
    data = read_bytes(path)
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
    except Exception as exc:  # numpy raises ValueError for any bad magic
        raise ReadError(path, f"not an .npy file: {exc}", offset=0) from None
    try:
        with warnings.catch_warnings():  # literal_eval of a corrupt header warns
            warnings.simplefilter("ignore")
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as exc:  # header is a Python literal: many failure modes
        raise ReadError(path, f"malformed .npy header: {exc}", offset=8) from None
    start = stream.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        raise ReadError(
            path,
            f"expected a real numeric array, got dtype {dtype} (pickles are not read)",
            offset=start,
        )
    if len(shape) != 2 or shape[1] not in (3, 6) or shape[0] < 1:
        raise ReadError(
            path, f"expected an array of shape (N, 3) or (N, 6), got {shape}", offset=8
        )
    count = shape[0] * shape[1]
    needed = count * dtype.itemsize
    if needed > len(data) - start:
        raise ReadError(
            path,
            f"truncated: shape {shape} of {dtype} needs {needed} bytes of data, "
            f"{len(data) - start} present",
            offset=len(data),
        )
    if needed < len(data) - start:
        raise ReadError(
            path,
            f"{len(data) - start - needed} unexpected bytes after the array data",
            offset=start + needed,
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    values = flat.reshape(shape, order="F" if fortran else "C")
    # byte offset of each row (of its first value, for Fortran order)
    row_step = dtype.itemsize if fortran else shape[1] * dtype.itemsize
    offsets = start + np.arange(shape[0]) * row_step
    pos = check_finite(path, values[:, :3], "coordinate", offsets=offsets)
    normal = None
    if shape[1] == 6:
        normal = check_finite(path, values[:, 3:], "normal", offsets=offsets)
    return Record(pos=pos, normal=normal)
