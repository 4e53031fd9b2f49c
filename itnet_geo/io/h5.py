"""HDF5 batches (``.h5``, ``.hdf5``) in the ``modelnet40_ply_hdf5_2048`` layout."""

from __future__ import annotations

import os

import numpy as np

from itnet_geo.io._source import check_finite, file_size
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record

# A dataset may be compressed, but one declaring far more data than the file could
# plausibly expand to is refused before it is read (HDF5 allows huge, unwritten
# datasets that would be materialised from the fill value).
_MAX_EXPANSION = 64
_SLACK_BYTES = 1 << 20


def read_h5(path: str | os.PathLike) -> Record:
    r"""Read a batch of point clouds from an HDF5 file (``ply_hdf5_2048`` layout).

    Datasets: ``data`` :math:`(S, N, 3)` coordinates, optional ``label``
    :math:`(S,)` or :math:`(S, 1)` integer classes, optional ``normal``
    :math:`(S, N, 3)`.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(S, N, 3)`, ``label`` :math:`(S,)` or :obj:`None`,
        ``normal`` :math:`(S, N, 3)` or :obj:`None`.

    Raises:
        ReadError: On a missing or malformed file, a missing ``data`` dataset, wrong
            shapes or dtypes, non-finite values, non-integer labels.
    """
    size = file_size(path)  # missing / empty / unreadable, as every reader
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a declared dependency
        raise ReadError(path, "reading .h5 files needs h5py") from None
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError for anything it cannot open
        raise ReadError(path, f"not a readable HDF5 file: {exc}") from None
    try:
        with handle:
            budget = _MAX_EXPANSION * size + _SLACK_BYTES
            data = _dataset(path, handle, "data", budget)
            if data is None:
                raise ReadError(path, "no 'data' dataset (expected shape (S, N, 3))")
            if data.ndim != 3 or data.shape[2] != 3 or 0 in data.shape:
                raise ReadError(
                    path, f"expected 'data' of shape (S, N, 3), got {data.shape}"
                )
            normal = _dataset(path, handle, "normal", budget)
            if normal is not None and normal.shape != data.shape:
                raise ReadError(
                    path,
                    f"expected 'normal' of the shape of 'data' {data.shape}, "
                    f"got {normal.shape}",
                )
            label = _dataset(path, handle, "label", budget)
            if label is not None:
                label = _labels(path, label, data.shape[0])
    except ReadError:
        raise
    except Exception as exc:  # corrupt chunks, filters, ... surface from h5py
        raise ReadError(path, f"cannot read HDF5 content: {exc}") from None
    pos = check_finite(path, data, "coordinate")
    if normal is not None:
        normal = check_finite(path, normal, "normal")
    return Record(pos=pos, normal=normal, label=label)


def _dataset(path, handle, name: str, budget: int):
    if name not in handle:
        return None
    node = handle[name]
    if not hasattr(node, "dtype") or not hasattr(node, "shape"):
        raise ReadError(path, f"'{name}' is not a dataset")
    if node.shape is None or node.dtype.kind not in "fiu":
        raise ReadError(
            path, f"expected a numeric '{name}' dataset, got dtype {node.dtype}"
        )
    nbytes = int(np.prod(node.shape, dtype=object)) * node.dtype.itemsize
    if nbytes > budget:
        raise ReadError(
            path,
            f"'{name}' declares shape {node.shape} ({nbytes} bytes), implausible for "
            "a file of this size",
        )
    return np.asarray(node[()])


def _labels(path, label: np.ndarray, num_shapes: int) -> np.ndarray:
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.shape != (num_shapes,):
        raise ReadError(
            path,
            f"expected 'label' of shape ({num_shapes},) or ({num_shapes}, 1), "
            f"got {label.shape}",
        )
    if label.dtype.kind == "f":
        if not np.isfinite(label).all() or (label != np.round(label)).any():
            raise ReadError(path, "'label' holds non-integer values")
    if label.size and (label.min() < -(2**62) or label.max() > 2**62):
        raise ReadError(path, "'label' values out of range")
    return label.astype(np.int64)
