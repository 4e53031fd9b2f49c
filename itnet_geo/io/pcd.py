"""Point Cloud Library PCD v0.7 (``.pcd``) reader: ascii, binary, binary_compressed."""

from __future__ import annotations

import os

import numpy as np

from itnet_geo.io._source import check_finite, parse_float_rows, read_bytes, text_lines
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record

_TYPES = {("F", 4): "f4", ("F", 8): "f8"}
_TYPES.update({("I", s): f"i{s}" for s in (1, 2, 4, 8)})
_TYPES.update({("U", s): f"u{s}" for s in (1, 2, 4, 8)})
_KEYS = (
    "VERSION",
    "FIELDS",
    "SIZE",
    "TYPE",
    "COUNT",
    "WIDTH",
    "HEIGHT",
    "VIEWPOINT",
    "POINTS",
    "DATA",
)
_NORMALS = ("normal_x", "normal_y", "normal_z")
_MAX_HEADER_LINES = 64


def read_pcd(path: str | os.PathLike) -> Record:
    r"""Read a PCD v0.7 point cloud (``ascii``, ``binary``, ``binary_compressed`` data).

    ``FIELDS`` must include ``x y z``; ``normal_x normal_y normal_z`` are returned as
    normals when present; other fields (``rgb``, ``intensity``, padding ``_``...)
    are skipped. ``binary_compressed`` data is LZF-decompressed in pure Python.
    Points that PCL marks invalid with NaN are refused like any other non-finite
    coordinate.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(N, 3)` and ``normal`` :math:`(N, 3)` or :obj:`None`.

    Raises:
        ReadError: On a missing, truncated or malformed file; header and ascii errors
            name the line, binary errors the byte offset.
    """
    data = read_bytes(path)
    header, body, header_lines = _header(path, data)
    fields, layout, points, mode = header
    names = [name for name, _, _ in fields]
    for axis in ("x", "y", "z"):
        if names.count(axis) != 1:
            raise ReadError(
                path,
                f"FIELDS needs exactly one {axis!r}",
                header_lines.get("FIELDS"),
            )
    wanted = ["x", "y", "z"]
    if all(names.count(n) == 1 for n in _NORMALS):
        wanted += list(_NORMALS)
    for name, _, count in fields:
        if name in wanted and count != 1:
            raise ReadError(
                path,
                f"field {name!r} must have COUNT 1, got {count}",
                header_lines.get("COUNT"),
            )
    if mode == "ascii":
        values, lines = _ascii(path, data, body, header_lines, fields, points, wanted)
        where = {"lines": lines}
    elif mode == "binary":
        values, offsets = _binary(path, data, body, fields, layout, points, wanted)
        where = {"offsets": offsets}
    else:  # rows are not contiguous in the compressed stream: errors name the row
        values = _compressed(path, data, body, fields, layout, points, wanted)
        where = {}
    pos = check_finite(path, values[:, :3], "coordinate", **where)
    normal = None
    if len(wanted) == 6:
        normal = check_finite(path, values[:, 3:], "normal", **where)
    return Record(pos=pos, normal=normal)


def _header(path, data: bytes):
    """Parse header lines up to DATA; return fields, row layout, point count, mode."""
    found: dict[str, list[str]] = {}
    lines_of: dict[str, int] = {}
    start = 0
    for number in range(1, _MAX_HEADER_LINES + 1):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        text = text_lines(data[start:end])[0]
        start = end + 1
        hash_at = text.find("#")
        if hash_at >= 0:
            text = text[:hash_at]
        tokens = text.split()
        if not tokens:
            if start > len(data):
                break
            continue
        key = tokens[0].upper()
        if key not in _KEYS:
            if not found:
                raise ReadError(
                    path,
                    f"expected a PCD header line (VERSION, FIELDS, ...), got "
                    f"{tokens[0][:20]!r}",
                    number,
                )
            raise ReadError(
                path, f"unknown PCD header keyword {tokens[0][:20]!r}", number
            )
        if key in found:
            raise ReadError(path, f"duplicate {key} line", number)
        found[key] = tokens[1:]
        lines_of[key] = number
        if key == "DATA":
            break
        if start > len(data):
            break
    if "DATA" not in found:
        raise ReadError(path, "no DATA line in the header")
    body = min(start, len(data))

    def need(key):
        if key not in found:
            raise ReadError(path, f"header has no {key} line")
        return found[key]

    names = need("FIELDS")
    n = len(names)
    if n == 0:
        raise ReadError(path, "FIELDS lists no fields", lines_of["FIELDS"])
    sizes = need("SIZE")
    types = need("TYPE")
    counts = found.get("COUNT", ["1"] * n)
    for key, values in (("SIZE", sizes), ("TYPE", types), ("COUNT", counts)):
        if len(values) != n:
            raise ReadError(
                path,
                f"{key} has {len(values)} entries for {n} FIELDS",
                lines_of.get(key),
            )
    fields = []
    dtypes = []
    for i, name in enumerate(names):
        size = _int(path, sizes[i], lines_of["SIZE"], "SIZE")
        count = _int(path, counts[i], lines_of.get("COUNT"), "COUNT")
        code = _TYPES.get((types[i].upper(), size))
        if code is None:
            raise ReadError(
                path,
                f"unsupported TYPE/SIZE {types[i][:8]!r}/{size} for field {name!r}",
                lines_of["TYPE"],
            )
        if count < 1:
            raise ReadError(
                path, f"COUNT of {name!r} must be positive", lines_of.get("COUNT")
            )
        fields.append((name, code, count))
        dtypes.append((f"f{i}", "<" + code, (count,)))
        row_bytes = sum(np.dtype(c).itemsize * k for _, c, k in fields)
        if row_bytes > len(data):
            raise ReadError(
                path,
                f"SIZE x COUNT gives {row_bytes} bytes per point, more than the file",
                lines_of.get("COUNT", lines_of["SIZE"]),
            )
    layout = np.dtype(dtypes)
    width = _int(
        path,
        _one(path, need("WIDTH"), lines_of["WIDTH"], "WIDTH"),
        lines_of["WIDTH"],
        "WIDTH",
    )
    height = _int(
        path,
        _one(path, found.get("HEIGHT", ["1"]), lines_of.get("HEIGHT"), "HEIGHT"),
        lines_of.get("HEIGHT"),
        "HEIGHT",
    )
    if "POINTS" in found:
        points = _int(
            path,
            _one(path, found["POINTS"], lines_of["POINTS"], "POINTS"),
            lines_of["POINTS"],
            "POINTS",
        )
        if points != width * height:
            raise ReadError(
                path,
                f"POINTS {points} differs from WIDTH x HEIGHT = {width * height}",
                lines_of["POINTS"],
            )
    else:
        points = width * height
    if points <= 0:
        raise ReadError(
            path, "the cloud has no points", lines_of.get("POINTS", lines_of["WIDTH"])
        )
    mode = _one(path, found["DATA"], lines_of["DATA"], "DATA").lower()
    if mode not in ("ascii", "binary", "binary_compressed"):
        raise ReadError(
            path,
            f"expected DATA ascii, binary or binary_compressed, got {mode[:20]!r}",
            lines_of["DATA"],
        )
    return (fields, layout, points, mode), body, lines_of


def _one(path, values, line, key) -> str:
    if len(values) != 1:
        raise ReadError(
            path, f"expected one value after {key}, got {len(values)}", line
        )
    return values[0]


def _int(path, token, line, what) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ReadError(
            path, f"expected an integer {what}, got {token[:20]!r}", line
        ) from None
    if value < 0 or value > 2**40:
        raise ReadError(path, f"{what} {value} is out of range", line)
    return value


def _columns(rows: dict, fields, wanted) -> np.ndarray:
    names = [name for name, _, _ in fields]
    return np.stack(
        [rows[names.index(w)].reshape(-1).astype(np.float64) for w in wanted], axis=1
    )


def _ascii(path, data, body, header_lines, fields, points, wanted):
    first = header_lines["DATA"] + 1
    rows, lines = [], []
    for number, text in enumerate(text_lines(data[body:]), start=first):
        tokens = text.split()
        if tokens:
            rows.append(tokens)
            lines.append(number)
    if len(rows) < points:
        raise ReadError(
            path,
            f"header declares {points} points but only {len(rows)} data lines follow",
            lines[-1] if lines else header_lines["DATA"],
        )
    if len(rows) > points:
        raise ReadError(
            path,
            f"unexpected data after the {points} points declared in the header",
            lines[points],
        )
    width = sum(count for _, _, count in fields)
    for tokens, number in zip(rows, lines, strict=True):
        if len(tokens) != width:
            raise ReadError(
                path, f"expected {width} values per point, got {len(tokens)}", number
            )
    values = parse_float_rows(path, rows, lines, "value")
    starts = np.cumsum([0] + [count for _, _, count in fields])
    names = [name for name, _, _ in fields]
    columns = values[:, [int(starts[names.index(w)]) for w in wanted]]
    return columns, lines


def _binary(path, data, body, fields, layout, points, wanted):
    remaining = len(data) - body
    needed = points * layout.itemsize
    if needed > remaining:
        raise ReadError(
            path,
            f"truncated: {points} points of {layout.itemsize} bytes need {needed} "
            f"bytes, only {remaining} remain",
            offset=len(data),
        )
    if data[body + needed :].strip():
        raise ReadError(
            path,
            f"{remaining - needed} unexpected bytes after the {points} points",
            offset=body + needed,
        )
    rows = np.frombuffer(data, dtype=layout, count=points, offset=body)
    columns = {i: rows[f"f{i}"] for i in range(len(fields))}
    offsets = body + np.arange(points) * layout.itemsize
    return _columns(columns, fields, wanted), offsets


def _compressed(path, data, body, fields, layout, points, wanted):
    if len(data) - body < 8:
        raise ReadError(
            path,
            "truncated: binary_compressed data needs an 8-byte size header",
            offset=body,
        )
    packed, unpacked = np.frombuffer(data, "<u4", 2, body).tolist()
    expected = points * layout.itemsize
    if unpacked != expected:
        raise ReadError(
            path,
            f"uncompressed size {unpacked} differs from {points} points x "
            f"{layout.itemsize} bytes = {expected}",
            offset=body + 4,
        )
    start = body + 8
    if packed > len(data) - start:
        raise ReadError(
            path,
            f"truncated: compressed size {packed} but only {len(data) - start} bytes "
            "remain",
            offset=body,
        )
    if data[start + packed :].strip():
        raise ReadError(
            path,
            f"{len(data) - start - packed} unexpected bytes after the compressed data",
            offset=start + packed,
        )
    try:
        raw = lzf_decompress(data[start : start + packed], expected)
    except ValueError as exc:
        raise ReadError(
            path, f"corrupt LZF data: {exc.args[0]}", offset=start + exc.args[1]
        ) from None
    # binary_compressed stores each field contiguously (structure of arrays)
    columns = {}
    at = 0
    for i, (_, code, count) in enumerate(fields):
        item = np.dtype("<" + code)
        columns[i] = np.frombuffer(raw, item, points * count, at).reshape(points, count)
        at += points * count * item.itemsize
    return _columns(columns, fields, wanted)


def lzf_decompress(src: bytes, expected: int) -> bytes:
    """Decompress LZF data (liblzf format) to exactly ``expected`` bytes.

    Raises:
        ValueError: With ``(reason, offset into src)`` for corrupt input.
    """
    out = bytearray()
    i = 0
    n = len(src)
    while i < n:
        op = i
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            length = ctrl + 1
            if i + length > n:
                raise ValueError("literal run past the end of the data", op)
            if len(out) + length > expected:
                raise ValueError("output longer than the declared size", op)
            out += src[i : i + length]
            i += length
            continue
        length = ctrl >> 5
        if length == 7:
            if i >= n:
                raise ValueError("back-reference cut off", op)
            length += src[i]
            i += 1
        if i >= n:
            raise ValueError("back-reference cut off", op)
        ref = len(out) - ((ctrl & 0x1F) << 8) - src[i] - 1
        i += 1
        length += 2
        if ref < 0:
            raise ValueError("back-reference before the start of the output", op)
        if len(out) + length > expected:
            raise ValueError("output longer than the declared size", op)
        if ref + length <= len(out):
            out += out[ref : ref + length]
        else:  # overlapping copy repeats the last len(out) - ref bytes
            period = out[ref:]
            out += (period * (length // len(period) + 1))[:length]
    if len(out) != expected:
        raise ValueError(f"decompressed to {len(out)} bytes, expected {expected}", n)
    return bytes(out)
