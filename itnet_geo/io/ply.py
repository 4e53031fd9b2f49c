"""Stanford PLY (``.ply``) reader: ascii and binary, any extra elements skipped."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from itnet_geo.io._source import (
    check_finite,
    check_indices,
    parse_float_rows,
    read_bytes,
    text_lines,
    triangulate,
)
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record

_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_FACE_LISTS = ("vertex_indices", "vertex_index")
_NORMALS = (["nx", "ny", "nz"], ["normal_x", "normal_y", "normal_z"])  # PCL: normal_*
_MAX_HEADER = 1 << 20
_END_HEADER = re.compile(rb"\nend_header[ \t\r]*(\n|$)")


@dataclass
class _Property:
    name: str
    dtype: str  # numpy type code without byte order
    count_dtype: Optional[str] = None  # set for list properties


@dataclass
class _Element:
    name: str
    count: int
    line: int
    properties: list[_Property] = field(default_factory=list)

    def has_lists(self) -> bool:
        return any(p.count_dtype is not None for p in self.properties)


def read_ply(path: str | os.PathLike) -> Record:
    r"""Read a PLY mesh or point cloud (ascii, binary little or big endian).

    The ``vertex`` element must have ``x y z`` (any numeric type); ``nx ny nz`` (or
    PCL's ``normal_x normal_y normal_z``) are returned as normals when all three
    are present; other vertex properties are skipped. Faces come from the
    ``vertex_indices`` (or ``vertex_index``) list of the ``face`` element and are
    fan triangulated. Any other element (for instance the ``camera`` element PCL
    writes after the vertices) is skipped, wherever it is.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(N, 3)`, ``face`` :math:`(F, 3)` or :obj:`None`,
        ``normal`` :math:`(N, 3)` or :obj:`None`.

    Raises:
        ReadError: On a missing, truncated or malformed file; header and ascii errors
            name the line, binary errors the byte offset.
    """
    data = read_bytes(path)
    endian, elements, body, header_lines = _header(path, data)
    vertex = [e for e in elements if e.name == "vertex"]
    if len(vertex) != 1:
        raise ReadError(
            path, f"expected one 'vertex' element in the header, got {len(vertex)}"
        )
    vertex = vertex[0]
    names = [p.name for p in vertex.properties]
    for axis in ("x", "y", "z"):
        if names.count(axis) != 1:
            raise ReadError(
                path, f"vertex element needs one scalar property {axis!r}", vertex.line
            )
    wanted = ["x", "y", "z"]
    for normal_names in _NORMALS:
        if all(names.count(n) == 1 for n in normal_names):
            wanted += normal_names
            break
    has_normals = len(wanted) == 6
    for p in vertex.properties:
        if p.name in wanted and p.count_dtype is not None:
            raise ReadError(path, f"vertex property {p.name!r} is a list", vertex.line)
    faces = [e for e in elements if e.name == "face"]
    if len(faces) > 1:
        raise ReadError(path, "more than one 'face' element", faces[1].line)
    face_list = None
    if faces:
        lists = [p for p in faces[0].properties if p.name in _FACE_LISTS]
        if len(lists) != 1 or lists[0].count_dtype is None:
            raise ReadError(
                path,
                "face element needs one list property 'vertex_indices' "
                "(or 'vertex_index')",
                faces[0].line,
            )
        face_list = lists[0]
        for code in (face_list.count_dtype, face_list.dtype):
            if code[0] not in "iu":
                raise ReadError(
                    path,
                    f"face index list must be of integer type, got {code}",
                    faces[0].line,
                )
    if vertex.count == 0:
        raise ReadError(path, "vertex element has 0 vertices", vertex.line)

    if endian is None:
        columns, polygons = _ascii_body(
            path, data, body, header_lines, elements, vertex, wanted, face_list
        )
        kind = "line"
    else:
        columns, polygons = _binary_body(
            path, data, body, endian, elements, vertex, wanted, face_list
        )
        kind = "offset"
    values, where = columns
    pos = check_finite(path, values[:, :3], "vertex coordinate", **{kind + "s": where})
    normal = None
    if has_normals:
        normal = check_finite(path, values[:, 3:6], "normal", **{kind + "s": where})
    face = None
    if polygons is not None and len(polygons[0]):
        corners, face_where = polygons
        if isinstance(corners, np.ndarray):  # uniform polygons, one array
            if corners.shape[1] < 3:
                _small_face(path, corners.shape[1], kind, face_where[0])
            check_indices(path, corners, len(pos), **{kind + "s": face_where})
        else:
            sizes = np.fromiter(map(len, corners), dtype=np.int64, count=len(corners))
            if (sizes < 3).any():
                first = int(np.flatnonzero(sizes < 3)[0])
                _small_face(path, int(sizes[first]), kind, face_where[first])
            # one row per corner, each reported at its face's line / offset
            flat = np.concatenate(corners)[:, None]
            check_indices(
                path, flat, len(pos), **{kind + "s": np.repeat(face_where, sizes)}
            )
        face = triangulate(corners)
    return Record(pos=pos, face=face, normal=normal)


def _small_face(path, size: int, kind: str, at) -> None:
    raise ReadError(
        path, f"expected a face of at least 3 vertices, got {size}", **{kind: int(at)}
    )


def _header(path, data: bytes):
    """Parse the header; return endianness (None for ascii), elements, body start."""
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise ReadError(path, f"expected the PLY magic 'ply', got {data[:8]!r}", line=1)
    end = _END_HEADER.search(data, 0, _MAX_HEADER)
    if end is None:
        raise ReadError(path, "no 'end_header' line in the first MiB")
    lines = text_lines(data[: end.start()])  # the header without 'end_header'
    if len(lines) < 2:
        raise ReadError(path, "missing the 'format' line", line=1)
    fmt = lines[1].split()
    if len(fmt) != 3 or fmt[0] != "format" or fmt[1] not in _FORMATS:
        raise ReadError(
            path,
            "expected 'format ascii|binary_little_endian|binary_big_endian 1.0', got "
            f"{lines[1].strip()[:60]!r}",
            line=2,
        )
    if fmt[2] != "1.0":
        raise ReadError(path, f"unsupported PLY version {fmt[2][:20]!r}", line=2)
    elements: list[_Element] = []
    for number, text in enumerate(lines[2:], start=3):
        tokens = text.split()
        if not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        if tokens[0] == "element":
            if len(tokens) != 3:
                raise ReadError(path, "expected 'element <name> <count>'", number)
            try:
                count = int(tokens[2])
            except ValueError:
                count = -1
            if count < 0:
                raise ReadError(
                    path,
                    f"expected a non-negative element count, got {tokens[2]!r}",
                    number,
                )
            elements.append(_Element(tokens[1], count, number))
        elif tokens[0] == "property":
            if not elements:
                raise ReadError(path, "property before any element", number)
            elements[-1].properties.append(_property(path, tokens, number))
        else:
            raise ReadError(
                path, f"unknown PLY header keyword {tokens[0][:20]!r}", number
            )
    return _FORMATS[fmt[1]], elements, end.end(), len(lines) + 1


def _property(path, tokens: list[str], number: int) -> _Property:
    if len(tokens) == 3 and tokens[1] in _TYPES:
        return _Property(tokens[2], _TYPES[tokens[1]])
    if len(tokens) == 5 and tokens[1] == "list":
        count, item = tokens[2], tokens[3]
        if count in _TYPES and item in _TYPES:
            if _TYPES[count][0] not in "iu":
                raise ReadError(
                    path, f"list count type must be integer, got {count}", number
                )
            return _Property(tokens[4], _TYPES[item], _TYPES[count])
    raise ReadError(
        path,
        "expected 'property <type> <name>' or 'property list <count type> "
        f"<item type> <name>', got {' '.join(tokens)[:80]!r}",
        number,
    )


# --------------------------------------------------------------------- ascii body
def _ascii_body(path, data, body, header_lines, elements, vertex, wanted, face_list):
    text = text_lines(data[body:])
    rows = []
    for number, line in enumerate(text, start=header_lines + 1):
        tokens = line.split()
        if tokens:
            rows.append((number, tokens))
    total = sum(e.count for e in elements)
    if total > len(rows):
        raise ReadError(
            path,
            f"header declares {total} element rows but only {len(rows)} data lines "
            "follow",
            rows[-1][0] if rows else header_lines,
        )
    if total < len(rows):
        raise ReadError(
            path,
            f"unexpected data after the {total} element rows declared in the header",
            rows[total][0],
        )
    columns = polygons = None
    at = 0
    for element in elements:
        chunk = rows[at : at + element.count]
        at += element.count
        lines = [n for n, _ in chunk]
        if not element.has_lists():
            width = len(element.properties)
            for n, tokens in chunk:
                if len(tokens) != width:
                    raise ReadError(
                        path,
                        f"expected {width} values for element {element.name!r}, "
                        f"got {len(tokens)}",
                        n,
                    )
            values = parse_float_rows(path, [t for _, t in chunk], lines, "value")
            if element is vertex:
                names = [p.name for p in element.properties]
                columns = (values[:, [names.index(w) for w in wanted]], lines)
            continue
        if element is not vertex and face_list is not None and element.name == "face":
            fast = _ascii_uniform_faces(path, element, chunk, face_list)
            if fast is not None:
                polygons = (fast, lines)
                continue
        scalars, lists = _ascii_walk(path, element, chunk, face_list)
        if element is vertex:
            columns = (np.stack([scalars[w] for w in wanted], axis=1), lines)
        elif element.name == "face" and face_list is not None:
            polygons = (lists, lines)
    if polygons is None and face_list is not None:
        polygons = ([], [])
    return columns, polygons


def _ascii_uniform_faces(path, element, chunk, face_list):
    """All-triangle (or all-n-gon) faces with the list as only property, vectorized."""
    if len(element.properties) != 1 or not chunk:
        return None
    first = chunk[0][1]
    width = len(first)
    if any(len(t) != width or t[0] != first[0] for _, t in chunk):
        return None
    try:
        size = int(first[0])
    except ValueError:
        return None
    if size != width - 1:
        return None
    flat = [tok for _, t in chunk for tok in t[1:]]
    try:
        return np.array(flat, dtype=np.int64).reshape(len(chunk), size)
    except (ValueError, OverflowError):
        return None  # the slow walk names the bad token


def _ascii_walk(path, element, chunk, face_list):
    scalars = {p.name: [] for p in element.properties if p.count_dtype is None}
    lists = []
    for number, tokens in chunk:
        at = 0
        for prop in element.properties:
            if at >= len(tokens):
                raise ReadError(
                    path,
                    f"row of element {element.name!r} ends before property "
                    f"{prop.name!r}",
                    number,
                )
            if prop.count_dtype is None:
                scalars[prop.name].append(
                    _ascii_number(path, tokens[at], number, prop.name)
                )
                at += 1
                continue
            count = _ascii_int(path, tokens[at], number, f"{prop.name} count")
            if count < 0 or at + 1 + count > len(tokens):
                raise ReadError(
                    path,
                    f"list {prop.name!r} declares {count} items but "
                    f"{len(tokens) - at - 1} values remain on the line",
                    number,
                )
            items = tokens[at + 1 : at + 1 + count]
            if prop is face_list:
                lists.append(
                    np.array(
                        [_ascii_int(path, t, number, "face index") for t in items],
                        dtype=np.int64,
                    )
                )
            else:
                for t in items:
                    _ascii_number(path, t, number, prop.name)
            at += 1 + count
        if at != len(tokens):
            raise ReadError(
                path,
                f"{len(tokens) - at} unexpected values at the end of a row of element "
                f"{element.name!r}",
                number,
            )
    return {k: np.array(v, dtype=np.float64) for k, v in scalars.items()}, lists


def _ascii_number(path, token, number, what) -> float:
    try:
        return float(token)
    except ValueError:
        raise ReadError(
            path, f"expected a number ({what}), got {token!r}", number
        ) from None


def _ascii_int(path, token, number, what) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ReadError(
            path, f"expected an integer {what}, got {token!r}", number
        ) from None
    if not -(2**62) < value < 2**62:
        raise ReadError(path, f"{what} {token} is out of range", number)
    return value


# -------------------------------------------------------------------- binary body
def _binary_body(path, data, body, endian, elements, vertex, wanted, face_list):
    columns = polygons = None
    at = body
    for element in elements:
        props = element.properties
        if not props or element.count == 0:
            continue
        remaining = len(data) - at
        min_row = sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in props)
        if element.count * min_row > remaining:
            raise ReadError(
                path,
                f"truncated: element {element.name!r} declares {element.count} rows "
                f"of at least {min_row} bytes, only {remaining} bytes remain",
                offset=at,
            )
        if not element.has_lists():
            layout = np.dtype(
                [(f"f{i}", endian + p.dtype) for i, p in enumerate(props)]
            )
            rows = np.frombuffer(data, dtype=layout, count=element.count, offset=at)
            if element is vertex:
                names = [p.name for p in props]
                values = np.stack(
                    [rows[f"f{names.index(w)}"].astype(np.float64) for w in wanted],
                    axis=1,
                )
                offsets = at + np.arange(element.count) * layout.itemsize
                columns = (values, offsets)
            at += element.count * layout.itemsize
            continue
        uniform = _binary_uniform(data, at, endian, element)
        if uniform is not None:
            named, layout = uniform
            offsets = at + np.arange(element.count) * layout.itemsize
            if element is vertex:
                values = np.stack([named[w].astype(np.float64) for w in wanted], axis=1)
                columns = (values, offsets)
            elif element.name == "face" and face_list is not None:
                polygons = (named[face_list.name].astype(np.int64), offsets)
            at += element.count * layout.itemsize
            continue
        scalars, lists, offsets, at = _binary_walk(
            path, data, at, endian, element, face_list
        )
        if element is vertex:
            columns = (np.stack([scalars[w] for w in wanted], axis=1), offsets)
        elif element.name == "face" and face_list is not None:
            polygons = (lists, offsets)
    tail = data[at:]
    if tail.strip():
        raise ReadError(
            path, f"{len(tail)} unexpected bytes after the last element", offset=at
        )
    if polygons is None and face_list is not None:
        polygons = ([], [])
    return columns, polygons


def _binary_uniform(data, at, endian, element):
    """Read a list element whose lists all have the first row's lengths, or None.

    If every row's list lengths equal the first row's, every row has the first
    row's size, so one structured ``frombuffer`` reads the element exactly.
    """
    fields = []
    cursor = at
    for i, prop in enumerate(element.properties):
        item = np.dtype(endian + prop.dtype)
        if prop.count_dtype is None:
            fields.append((f"s{i}", item))
            cursor += item.itemsize
            continue
        count_type = np.dtype(endian + prop.count_dtype)
        if cursor + count_type.itemsize > len(data):
            return None
        count = int(np.frombuffer(data, count_type, 1, cursor)[0])
        if count < 0:
            return None
        cursor += count_type.itemsize + count * item.itemsize
        if cursor > len(data):
            return None
        fields.append((f"n{i}", count_type))
        fields.append((f"l{i}", item, (count,)))
    layout = np.dtype(fields)
    if layout.itemsize == 0 or element.count * layout.itemsize > len(data) - at:
        return None
    rows = np.frombuffer(data, dtype=layout, count=element.count, offset=at)
    for name in layout.names:
        if name.startswith("n") and (rows[name] != rows[name][0]).any():
            return None
    named = {}
    for i, prop in enumerate(element.properties):
        named[prop.name] = rows[f"s{i}" if prop.count_dtype is None else f"l{i}"]
    return named, layout


def _binary_walk(path, data, at, endian, element, face_list):
    """Row-by-row read of an element with variable-length lists."""
    scalars = {p.name: [] for p in element.properties if p.count_dtype is None}
    lists = []
    offsets = np.empty(element.count, dtype=np.int64)
    end = len(data)
    for row in range(element.count):
        offsets[row] = at
        for prop in element.properties:
            if prop.count_dtype is None:
                item = np.dtype(endian + prop.dtype)
                if at + item.itemsize > end:
                    _truncated(path, element, row, prop, at)
                scalars[prop.name].append(np.frombuffer(data, item, 1, at)[0])
                at += item.itemsize
                continue
            count_type = np.dtype(endian + prop.count_dtype)
            if at + count_type.itemsize > end:
                _truncated(path, element, row, prop, at)
            count = int(np.frombuffer(data, count_type, 1, at)[0])
            if count < 0:
                raise ReadError(
                    path, f"negative list length {count} for {prop.name!r}", offset=at
                )
            at += count_type.itemsize
            item = np.dtype(endian + prop.dtype)
            if at + count * item.itemsize > end:
                _truncated(path, element, row, prop, at)
            if prop is face_list:
                lists.append(np.frombuffer(data, item, count, at).astype(np.int64))
            at += count * item.itemsize
    columns = {k: np.array(v, dtype=np.float64) for k, v in scalars.items()}
    return columns, lists, offsets, at


def _truncated(path, element, row, prop, at):
    raise ReadError(
        path,
        f"truncated: file ends in row {row} of element {element.name!r} "
        f"(property {prop.name!r}; header declares {element.count} rows)",
        offset=at,
    )
