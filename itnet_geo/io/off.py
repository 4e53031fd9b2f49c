"""Object File Format (``.off``) reader, including ModelNet's malformed headers."""

from __future__ import annotations

import os
import re

import numpy as np

from itnet_geo.io._source import (
    check_finite,
    check_indices,
    parse_float_rows,
    parse_int,
    parse_int_rows,
    read_bytes,
    text_lines,
    triangulate,
)
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record

# magic -> (allowed tokens per vertex line, whether columns 3:6 are normals)
_VARIANTS = {
    "OFF": ((3,), False),
    "COFF": ((6, 7), False),
    "NOFF": ((6,), True),
    "CNOFF": ((9, 10), True),
}
_MAGIC = re.compile(r"^(CNOFF|COFF|NOFF|OFF)(.*)$", re.IGNORECASE)
_MAX_FACE_COLOUR = 4  # trailing per-face values: colour-map index, RGB or RGBA


def read_off(path: str | os.PathLike) -> Record:
    r"""Read an OFF mesh (``OFF``, ``COFF``, ``NOFF``, ``CNOFF``).

    Accepts ``#`` comments and blank lines anywhere, counts glued to the magic as
    in ModelNet (``OFF490 518 0``) or on the magic's line, polygon faces (fan
    triangulated) and optional trailing per-face colour values. Vertex colours are
    dropped; ``NOFF`` normals are returned.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(N, 3)`, ``face`` :math:`(F, 3)` (or :obj:`None`
        without faces), ``normal`` for ``NOFF`` / ``CNOFF``.

    Raises:
        ReadError: On a missing, empty or malformed file, naming the line.
    """
    raw = text_lines(read_bytes(path))
    magic, num_v, num_f, body = _header(path, raw)
    if magic == "OFF":
        fast = _read_plain_triangles(path, raw, body, num_v, num_f)
        if fast is not None:
            return fast
    # (line number, tokens) of every line with content after the header
    content = []
    for number, text in enumerate(raw[body:], start=body + 1):
        hash_at = text.find("#")
        if hash_at >= 0:
            text = text[:hash_at]
        tokens = text.split()
        if tokens:
            content.append((number, tokens))
    if num_v + num_f > len(content):
        raise ReadError(
            path,
            f"header declares {num_v} vertices and {num_f} faces but only "
            f"{len(content)} data lines follow",
            content[-1][0] if content else body,
        )

    widths, has_normals = _VARIANTS[magic]
    vert_rows = content[:num_v]
    vert_lines = [line for line, _ in vert_rows]
    vert_tokens = [tokens for _, tokens in vert_rows]
    for line, tokens in vert_rows:
        if len(tokens) not in widths:
            raise ReadError(path, _width_reason(magic, widths, len(tokens)), line)
    if len(widths) > 1:
        keep = 6 if has_normals else 3
        vert_tokens = [tokens[:keep] for tokens in vert_tokens]
    values = parse_float_rows(path, vert_tokens, vert_lines, "vertex coordinate")
    pos = check_finite(path, values[:, :3], "vertex coordinate", lines=vert_lines)
    normal = None
    if has_normals:
        normal = check_finite(path, values[:, 3:6], "normal", lines=vert_lines)

    face_rows = content[num_v : num_v + num_f]
    if num_v + num_f < len(content):
        extra_line = content[num_v + num_f][0]
        raise ReadError(
            path,
            f"unexpected data after the {num_v} vertices and {num_f} faces declared "
            "in the header",
            extra_line,
        )
    face = _read_faces(path, face_rows, num_v) if num_f else None
    return Record(pos=pos, face=face, normal=normal)


def _header(path, raw: list[str]) -> tuple[str, int, int, int]:
    """Find magic and counts; return them and the index of the first body line."""
    found: list[tuple[int, list[str]]] = []  # content lines of the header
    for index, text in enumerate(raw):
        hash_at = text.find("#")
        tokens = (text[:hash_at] if hash_at >= 0 else text).split()
        if not tokens:
            continue
        if not found:
            match = _MAGIC.match(tokens[0])
            if match is None:
                raise ReadError(
                    path,
                    f"expected the OFF magic ('OFF'), got {tokens[0][:20]!r}",
                    index + 1,
                )
            # ModelNet glues the counts to the magic: 'OFF490 518 0'
            rest = ([match.group(2)] if match.group(2) else []) + tokens[1:]
            found.append((index, [match.group(1).upper()]))
            if not rest:
                continue
            tokens = rest
        found.append((index, tokens))
        break
    if not found:
        raise ReadError(path, "no data (empty or only comments)")
    if len(found) < 2:
        raise ReadError(path, "missing the vertex/face count line", found[0][0] + 1)
    magic = found[0][1][0]
    index, counts = found[1]
    line = index + 1
    if len(counts) not in (2, 3):
        raise ReadError(
            path,
            f"expected 'num_vertices num_faces [num_edges]', got {len(counts)} values",
            line,
        )
    num_v = parse_int(path, counts[0], line, "vertex count")
    num_f = parse_int(path, counts[1], line, "face count")
    if len(counts) == 3:
        parse_int(path, counts[2], line, "edge count")
    if num_v <= 0 or num_f < 0:
        raise ReadError(
            path,
            f"expected a positive vertex count and a non-negative face count, "
            f"got {num_v} and {num_f}",
            line,
        )
    return magic, num_v, num_f, index + 1


# the characters str.split() treats as whitespace in ASCII text
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True


def _read_plain_triangles(path, raw, body, num_v, num_f):
    """Vectorized read of the common case, or None to take the line-by-line path.

    Applies only to plain ASCII without comments whose body lines hold exactly
    ``x y z`` and ``3 i j k``; then the tokens of one ``split()`` line up with
    the rows, and every check below is the one the slow path makes.
    """
    text = "\n".join(raw[body:])
    if not text or "#" in text or not text.isascii():
        return None
    encoded = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    space = _ASCII_SPACE[encoded]
    starts = ~space
    starts[1:] &= space[:-1]
    newlines = np.flatnonzero(encoded == 10)
    line_of = np.searchsorted(newlines, np.flatnonzero(starts))
    per_line = np.bincount(line_of, minlength=len(newlines) + 1)
    rows = np.flatnonzero(per_line)
    if len(rows) != num_v + num_f:
        return None
    if (per_line[rows[:num_v]] != 3).any() or (per_line[rows[num_v:]] != 4).any():
        return None
    tokens = text.split()
    try:
        values = np.array(tokens[: 3 * num_v], dtype=np.float64).reshape(num_v, 3)
        faces = np.array(tokens[3 * num_v :], dtype=np.int64).reshape(num_f, 4)
    except (ValueError, OverflowError):
        return None
    if (faces[:, 0] != 3).any():
        return None
    lines = rows + body + 1
    pos = check_finite(path, values, "vertex coordinate", lines=lines[:num_v])
    tri = faces[:, 1:]
    check_indices(path, tri, num_v, lines=lines[num_v:])
    return Record(pos=pos, face=tri if num_f else None)


def _width_reason(magic: str, widths: tuple[int, ...], got: int) -> str:
    if magic == "OFF":
        return f"expected 3 vertex coordinates, got {got}"
    allowed = " or ".join(str(w) for w in widths)
    return f"expected {allowed} values per {magic} vertex, got {got}"


def _read_faces(path, face_rows, num_v: int) -> np.ndarray:
    lines = [line for line, _ in face_rows]
    rows = [tokens for _, tokens in face_rows]
    # fast path: every face a plain triangle
    if all(len(tokens) == 4 and tokens[0] == "3" for tokens in rows):
        tri = parse_int_rows(path, [t[1:] for t in rows], lines, "face index")
        check_indices(path, tri, num_v, lines=lines)
        return tri
    polygons = []
    for line, tokens in face_rows:
        size = parse_int(path, tokens[0], line, "face size")
        if size < 3:
            raise ReadError(
                path, f"expected a face of at least 3 vertices, got {size}", line
            )
        extra = len(tokens) - 1 - size
        if extra < 0:
            raise ReadError(
                path, f"face declares {size} vertices but lists {len(tokens) - 1}", line
            )
        if extra > _MAX_FACE_COLOUR:
            raise ReadError(
                path,
                f"face declares {size} vertices but has {extra} extra values "
                f"(at most {_MAX_FACE_COLOUR} colour values allowed)",
                line,
            )
        index = parse_int_rows(path, [tokens[1 : 1 + size]], [line], "face index")
        check_indices(path, index, num_v, lines=[line])
        if extra:
            parse_float_rows(path, [tokens[1 + size :]], [line], "face colour value")
        polygons.append(index[0].tolist())
    return triangulate(polygons)
