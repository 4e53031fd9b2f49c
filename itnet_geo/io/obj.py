"""Wavefront OBJ (``.obj``) reader: vertices and faces, everything else skipped."""

from __future__ import annotations

import os

from itnet_geo.io._source import (
    check_finite,
    parse_float_rows,
    read_bytes,
    text_lines,
    triangulate,
)
from itnet_geo.io.errors import ReadError
from itnet_geo.io.record import Record

# statements that carry nothing a Record holds (texture/normal coordinates, groups,
# materials, smoothing, lines, points, free-form geometry)
_SKIPPED = frozenset(
    "vt vn vp g o s usemtl mtllib l p cstype deg bmat step curv curv2 surf parm "
    "trim hole scrv sp end con mg bevel c_interp d_interp lod maplib usemap "
    "shadow_obj trace_obj ctech stech".split()
)


def read_obj(path: str | os.PathLike) -> Record:
    r"""Read the vertices and faces of a Wavefront OBJ file.

    ``v x y z [w | r g b]`` lines give vertices; ``f`` lines give polygons whose
    corners may be written ``i``, ``i/t``, ``i//n`` or ``i/t/n``, with 1-based or
    negative (relative to the vertices read so far) indices; polygons are fan
    triangulated. Texture coordinates, normals, groups, materials and the other
    statements in the specification are skipped; an unknown statement is an error.
    Lines ending in a backslash continue on the next line.

    Args:
        path (str or os.PathLike): The file.

    Returns:
        Record: ``pos`` :math:`(N, 3)` and ``face`` :math:`(F, 3)` (or :obj:`None`
        for a file without faces).

    Raises:
        ReadError: On a missing, empty or malformed file, naming the line.
    """
    raw = text_lines(read_bytes(path))
    vert_tokens: list[list[str]] = []
    vert_lines: list[int] = []
    polygons: list[list[int]] = []
    number = 0
    while number < len(raw):
        text = raw[number]
        number += 1
        line = number
        while text.rstrip().endswith("\\") and number < len(raw):
            text = text.rstrip()[:-1] + " " + raw[number]
            number += 1
        hash_at = text.find("#")
        if hash_at >= 0:
            text = text[:hash_at]
        tokens = text.split()
        if not tokens:
            continue
        keyword = tokens[0]
        if keyword == "v":
            if len(tokens) not in (4, 5, 7, 8):
                raise ReadError(
                    path,
                    f"expected 3 vertex coordinates (plus optional w or r g b), "
                    f"got {len(tokens) - 1} values",
                    line,
                )
            vert_tokens.append(tokens[1:4])
            vert_lines.append(line)
            if len(tokens) > 4:
                parse_float_rows(path, [tokens[4:]], [line], "vertex value")
        elif keyword == "f":
            polygons.append(_face(path, tokens[1:], len(vert_tokens), line))
        elif keyword not in _SKIPPED:
            raise ReadError(path, f"unknown OBJ statement {keyword[:20]!r}", line)
    if not vert_tokens:
        raise ReadError(path, "no vertices ('v' lines) in file")
    values = parse_float_rows(path, vert_tokens, vert_lines, "vertex coordinate")
    pos = check_finite(path, values, "vertex coordinate", lines=vert_lines)
    num_v = len(pos)
    for corners, line in polygons:
        top = max(corners)
        if top >= num_v:
            raise ReadError(
                path,
                f"face index {top + 1} is past the vertex list ({num_v} vertices, "
                "1-based)",
                line,
            )
    face = triangulate([corners for corners, _ in polygons]) if polygons else None
    return Record(pos=pos, face=face)


def _face(path, corners: list[str], seen: int, line: int):
    if len(corners) < 3:
        raise ReadError(
            path, f"expected a face of at least 3 vertices, got {len(corners)}", line
        )
    resolved = []
    for corner in corners:
        head = corner.split("/", 1)[0]
        try:
            index = int(head)
        except ValueError:
            raise ReadError(
                path, f"expected an integer face index, got {corner!r}", line
            ) from None
        if index > 0:
            resolved.append(index - 1)
        elif index < 0:
            if seen + index < 0:
                raise ReadError(
                    path,
                    f"relative face index {index} points before the first vertex "
                    f"({seen} vertices so far)",
                    line,
                )
            resolved.append(seen + index)
        else:
            raise ReadError(
                path, "face index 0 is invalid (OBJ indices are 1-based)", line
            )
    return resolved, line
