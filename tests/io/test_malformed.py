"""Table-driven: every malformed file raises ReadError naming the place and reason."""

import io
import re
import struct

import numpy as np
import pytest
from conftest import PCD_HEADER, PLY_HEADER, ply_bytes

from itnet_geo.io import ReadError, read

ANY = object()

OFF_OK = "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
OBJ_OK = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
PLY_LE = ply_bytes("binary_little_endian")
PLY_HDR_LE = PLY_HEADER.format(fmt="binary_little_endian").encode()
BODY = len(PLY_HDR_LE)  # byte offset of the first vertex
VERTEX = 6 * 4 + 1  # bytes per vertex row in the sample
PCD_HDR = PCD_HEADER.format(mode="binary").encode()


def ply_ascii(rows: str, counts=(3, 1)) -> str:
    return (
        "ply\nformat ascii 1.0\n"
        f"element vertex {counts[0]}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {counts[1]}\n"
        "property list uchar int vertex_indices\nend_header\n" + rows
    )


def ply_le(vertices, faces, count=None) -> bytes:
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices) if count is None else count}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\n"
        "end_header\n"
    ).encode()
    body = b"".join(struct.pack("<3f", *v) for v in vertices)
    body += b"".join(struct.pack("<B", len(f)) + struct.pack(f"<{len(f)}i", *f)
                     for f in faces)  # fmt: skip
    return header + body


TRI3 = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]


def pcd_ascii(rows: str, points=2) -> str:
    return (
        "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        f"WIDTH {points}\nHEIGHT 1\nPOINTS {points}\nDATA ascii\n" + rows
    )


def npy(array, **kwargs) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kwargs)
    return buf.getvalue()


def h5(tmp_path, **datasets) -> bytes:
    import h5py

    path = tmp_path / "made.h5"
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
    return path.read_bytes()


CLOUD = np.zeros((2, 5, 3), np.float32)

# (id, file name, content (str, bytes or callable(tmp_path)), message regex, where)
CASES = [
    # ---------------------------------------------------------------- OFF
    ("off-magic", "a.off", "PLY\n3 1 0\n", r"expected the OFF magic", ("line", 1)),
    ("off-short-vertex", "a.off", "OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n",
     r"a\.off: line 4: expected 3 vertex coordinates, got 2$", ("line", 4)),
    ("off-few-lines", "a.off", "OFF\n5 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
     r"header declares 5 vertices and 1 faces but only 4 data lines follow",
     ("line", 6)),
    ("off-extra-lines", "a.off", OFF_OK + "3 0 1 2\n",
     r"unexpected data after the 3 vertices and 1 faces", ("line", 7)),
    ("off-nan", "a.off", "OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n",
     r"non-finite vertex coordinate nan", ("line", 4)),
    ("off-inf", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 -inf 0\n3 0 1 2\n",
     r"non-finite vertex coordinate -inf", ("line", 5)),
    ("off-float32-overflow", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 1e39\n0 1 0\n3 0 1 2\n",
     r"vertex coordinate 1e\+39 overflows float32", ("line", 4)),
    ("off-face-past-end", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
     r"face index 3 is past the vertex list \(3 vertices, 0-based\)", ("line", 6)),
    ("off-face-negative", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n",
     r"face index -1 is negative", ("line", 6)),
    ("off-polygon-past-end", "a.off",
     "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2 9\n",
     r"face index 9 is past the vertex list", ("line", 6)),
    ("off-non-numeric", "a.off", "OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n",
     r"expected a number \(vertex coordinate\), got 'x'", ("line", 4)),
    ("off-float-index", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2.5\n",
     r"expected an integer face index, got '2\.5'", ("line", 6)),
    ("off-face-size", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
     r"expected a face of at least 3 vertices, got 2", ("line", 6)),
    ("off-face-short", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n",
     r"face declares 4 vertices but lists 3", ("line", 6)),
    ("off-face-junk", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 1 2 3 4 5\n",
     r"5 extra values", ("line", 6)),
    ("off-colour-junk", "a.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2 red\n",
     r"expected a number \(face colour value\), got 'red'", ("line", 6)),
    ("off-absurd-count", "a.off", "OFF\n1000000000000 1 0\n0 0 0\n",
     r"declares 1000000000000 vertices and 1 faces but only 1 data lines", ANY),
    ("off-counts", "a.off", "OFF\n3\n0 0 0\n", r"expected 'num_vertices num_faces",
     ("line", 2)),
    ("off-zero-vertices", "a.off", "OFF\n0 0 0\n", r"positive vertex count",
     ("line", 2)),
    ("off-only-comments", "a.off", "# nothing\n\n", r"no data", None),
    ("off-binary-junk", "a.off", b"\xff\xfe\x00\x01OFF", r"expected the OFF magic",
     ("line", 1)),
    # ---------------------------------------------------------------- OBJ
    ("obj-face-past-end", "a.obj", OBJ_OK + "f 1 2 4\n",
     r"face index 4 is past the vertex list \(3 vertices, 1-based\)", ("line", 5)),
    ("obj-relative-before-start", "a.obj", OBJ_OK + "f -1 -2 -4\n",
     r"relative face index -4 points before the first vertex", ("line", 5)),
    ("obj-index-zero", "a.obj", OBJ_OK + "f 0 1 2\n", r"face index 0 is invalid",
     ("line", 5)),
    ("obj-short-vertex", "a.obj", "v 0 0\n", r"expected 3 vertex coordinates",
     ("line", 1)),
    ("obj-nan", "a.obj", "v 0 0 0\nv 0 NaN 0\nv 1 1 1\n",
     r"non-finite vertex coordinate nan", ("line", 2)),
    ("obj-unknown", "a.obj", OBJ_OK + "xyz 1 2\n", r"unknown OBJ statement 'xyz'",
     ("line", 5)),
    ("obj-no-vertices", "a.obj", "# only a comment\ng group\n", r"no vertices", None),
    ("obj-face-size", "a.obj", OBJ_OK + "f 1 2\n", r"at least 3 vertices, got 2",
     ("line", 5)),
    ("obj-face-token", "a.obj", OBJ_OK + "f 1 b 3\n",
     r"expected an integer face index, got 'b'", ("line", 5)),
    ("obj-vertex-token", "a.obj", "v 0 0 zero\n",
     r"expected a number \(vertex coordinate\), got 'zero'", ("line", 1)),
    # ---------------------------------------------------------------- PLY
    ("ply-magic", "a.ply", b"plx\nformat ascii 1.0\n", r"expected the PLY magic",
     ("line", 1)),
    ("ply-format", "a.ply", b"ply\nformat binary 1.0\nend_header\n",
     r"expected 'format ascii\|binary_little_endian", ("line", 2)),
    ("ply-no-end-header", "a.ply", b"ply\nformat ascii 1.0\nelement vertex 1\n",
     r"no 'end_header'", None),
    ("ply-header-keyword", "a.ply",
     b"ply\nformat ascii 1.0\nelemnt vertex 1\nend_header\n",
     r"unknown PLY header keyword 'elemnt'", ("line", 3)),
    ("ply-no-x", "a.ply",
     b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float y\nend_header\n1\n",
     r"vertex element needs one scalar property 'x'", ("line", 3)),
    ("ply-truncated", "a.ply", PLY_LE[:-12],
     r"truncated: file ends in row 1 of element 'face'|truncated", ("offset", ANY)),
    ("ply-truncated-vertices", "a.ply", PLY_HDR_LE + b"\x00" * (3 * VERTEX),
     r"truncated: element 'vertex' declares 4 rows of at least 25 bytes, "
     r"only 75 bytes remain", ("offset", BODY)),
    ("ply-absurd-count", "a.ply", ply_le(TRI3, [(0, 1, 2)], count=10**12),
     r"element 'vertex' declares 1000000000000 rows", ("offset", ANY)),
    ("ply-trailing-bytes", "a.ply", PLY_LE + b"\x01\x02\x03",
     r"3 unexpected bytes after the last element", ("offset", len(PLY_LE))),
    ("ply-binary-nan", "a.ply",
     ply_le([(0, 0, 0), (0, float("nan"), 0), (1, 1, 1)], [(0, 1, 2)]),
     r"non-finite vertex coordinate nan", ("offset", ANY)),
    ("ply-binary-face-past-end", "a.ply", ply_le(TRI3, [(0, 1, 3)]),
     r"face index 3 is past the vertex list", ("offset", ANY)),
    ("ply-binary-face-negative", "a.ply", ply_le(TRI3, [(0, 1, 2), (0, -7, 1, 2)]),
     r"face index -7 is negative", ("offset", ANY)),
    ("ply-ascii-few-rows", "a.ply", ply_ascii("0 0 0\n1 0 0\n3 0 1 2\n"),
     r"header declares 4 element rows but only 3 data lines follow", ("line", 12)),
    ("ply-ascii-extra", "a.ply", ply_ascii("0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n9 9\n"),
     r"unexpected data after the 4 element rows", ("line", 14)),
    ("ply-ascii-short-row", "a.ply", ply_ascii("0 0 0\n1 0\n0 1 0\n3 0 1 2\n"),
     r"expected 3 values for element 'vertex', got 2", ("line", 11)),
    ("ply-ascii-list-short", "a.ply", ply_ascii("0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n"),
     r"list 'vertex_indices' declares 4 items but 3 values remain", ("line", 13)),
    ("ply-ascii-face-past", "a.ply", ply_ascii("0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n"),
     r"face index 5 is past the vertex list", ("line", 13)),
    ("ply-ascii-inf", "a.ply", ply_ascii("0 0 0\n1 0 inf\n0 1 0\n3 0 1 2\n"),
     r"non-finite vertex coordinate inf", ("line", 11)),
    ("ply-list-count-float", "a.ply",
     b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
     b"property list float int vertex_indices\nend_header\n",
     r"list count type must be integer", ("line", 5)),
    ("ply-face-no-list", "a.ply",
     b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
     b"property float z\nelement face 0\nproperty int other\nend_header\n0 0 0\n",
     r"face element needs one list property 'vertex_indices'", ("line", 7)),
    # ---------------------------------------------------------------- PCD
    ("pcd-magic", "a.pcd", b"\x00\x01garbage", r"expected a PCD header line",
     ("line", 1)),
    ("pcd-truncated", "a.pcd", PCD_HDR + b"\x00" * 50,
     r"truncated: 4 points of 28 bytes need 112 bytes, only 50 remain",
     ("offset", len(PCD_HDR) + 50)),
    ("pcd-trailing", "a.pcd", PCD_HDR + b"\x00" * 112 + b"junk",
     r"4 unexpected bytes after the 4 points", ("offset", len(PCD_HDR) + 112)),
    ("pcd-absurd", "a.pcd",
     PCD_HDR.replace(b"WIDTH 4", b"WIDTH 1000000000000")
     .replace(b"POINTS 4", b"POINTS 1000000000000") + b"\x00" * 112,
     r"truncated: 1000000000000 points", ("offset", ANY)),
    ("pcd-points-mismatch", "a.pcd", PCD_HDR.replace(b"POINTS 4", b"POINTS 5"),
     r"POINTS 5 differs from WIDTH x HEIGHT = 4", ("line", 10)),
    ("pcd-no-x", "a.pcd", pcd_ascii("0 0 0\n").replace("FIELDS x y z", "FIELDS a y z"),
     r"FIELDS needs exactly one 'x'", ("line", 2)),
    ("pcd-data-mode", "a.pcd", pcd_ascii("").replace("DATA ascii", "DATA zipped"),
     r"expected DATA ascii, binary or binary_compressed, got 'zipped'", ("line", 9)),
    ("pcd-sizes", "a.pcd", pcd_ascii("").replace("SIZE 4 4 4", "SIZE 4 4"),
     r"SIZE has 2 entries for 3 FIELDS", ("line", 3)),
    ("pcd-type", "a.pcd", pcd_ascii("").replace("TYPE F F F", "TYPE F F Q"),
     r"unsupported TYPE/SIZE 'Q'/4 for field 'z'", ("line", 4)),
    ("pcd-absurd-count", "a.pcd",
     pcd_ascii("").replace("COUNT 1 1 1", "COUNT 1 1 1000000000000"),
     r"SIZE x COUNT gives 4000000000008 bytes per point", ("line", 5)),
    ("pcd-ascii-row", "a.pcd", pcd_ascii("0 0 0\n1 1\n"),
     r"expected 3 values per point, got 2", ("line", 11)),
    ("pcd-ascii-few", "a.pcd", pcd_ascii("0 0 0\n"),
     r"header declares 2 points but only 1 data lines follow", ("line", 10)),
    ("pcd-ascii-nan", "a.pcd", pcd_ascii("0 0 0\nnan nan nan\n"),
     r"non-finite coordinate nan", ("line", 11)),
    ("pcd-binary-nan", "a.pcd", PCD_HDR + struct.pack("<6fI", *[0.0] * 6, 0)
     + struct.pack("<6fI", 0, float("inf"), 0, 0, 0, 0, 0) + b"\x00" * 56,
     r"non-finite coordinate inf", ("offset", len(PCD_HDR) + 28)),
    ("pcd-no-data-line", "a.pcd", b"VERSION 0.7\nFIELDS x y z\n",
     r"no DATA line in the header", None),
    ("pcd-compressed-size", "a.pcd",
     pcd_ascii("").replace("ascii", "binary_compressed").encode()
     + struct.pack("<II", 4, 999) + b"\x00" * 4,
     r"uncompressed size 999 differs from 2 points x 12 bytes = 24", ("offset", ANY)),
    ("pcd-compressed-corrupt", "a.pcd",
     pcd_ascii("").replace("ascii", "binary_compressed").encode()
     + struct.pack("<II", 3, 24) + b"\x20\x00\x00",
     r"corrupt LZF data: back-reference before the start", ("offset", ANY)),
    ("pcd-compressed-short", "a.pcd",
     pcd_ascii("").replace("ascii", "binary_compressed").encode()
     + struct.pack("<II", 5, 24) + b"\x03abcd",
     r"corrupt LZF data: decompressed to 4 bytes, expected 24", ("offset", ANY)),
    # ---------------------------------------------------------------- NPY
    ("npy-magic", "a.npy", b"\x93NUMPX\x01\x00", r"not an \.npy file", ("offset", 0)),
    ("npy-truncated", "a.npy", npy(np.zeros((5, 3), np.float32))[:-7],
     r"truncated: shape \(5, 3\) of float32 needs 60 bytes of data, 53 present",
     ("offset", ANY)),
    ("npy-trailing", "a.npy", npy(np.zeros((5, 3), np.float32)) + b"x",
     r"1 unexpected bytes after the array data", ("offset", ANY)),
    ("npy-shape", "a.npy", npy(np.zeros((5, 4))),
     r"expected an array of shape \(N, 3\) or \(N, 6\), got \(5, 4\)", ("offset", 8)),
    ("npy-pickle", "a.npy", npy(np.array([{}, 1, 2], dtype=object).reshape(1, 3),
                                allow_pickle=True),
     r"expected a real numeric array, got dtype object \(pickles are not read\)",
     ("offset", ANY)),
    ("npy-nan", "a.npy", npy(np.array([[0, 0, 0], [0, np.nan, 0]], np.float32)),
     r"non-finite coordinate nan", ("offset", 128 + 12)),
    ("npy-absurd", "a.npy",
     npy(np.zeros((1, 3), np.float32)).replace(b"(1, 3)", b"(10000000000000, 3)", 1),
     r"needs 120000000000000 bytes of data", ("offset", ANY)),
    ("npy-header", "a.npy", npy(np.zeros((1, 3))).replace(b"'descr'", b"'dxscr'", 1),
     r"malformed \.npy header", ("offset", 8)),
    # ---------------------------------------------------------------- TXT / CSV
    ("txt-columns", "a.txt", "0,0,0,0,0,1\n1,1,1,0,0\n",
     r"expected 6 values per row \(as on line 1\), got 5", ("line", 2)),
    ("txt-width", "a.txt", "0 0 0 1\n", r"expected 3 \(x y z\) or 6", ("line", 1)),
    ("txt-empty-field", "a.csv", "0,,0\n", r"empty field between commas", ("line", 1)),
    ("txt-header-row", "a.csv", "\n\nx,y,z\n1,2,3\n",
     r"expected a number \(coordinate\), got 'x'", ("line", 3)),
    ("txt-inf", "a.txt", "0 0 0\n1 1 Infinity\n", r"non-finite coordinate inf",
     ("line", 2)),
    ("txt-normal-nan", "a.txt", "0 0 0 0 0 1\n1 1 1 nan 0 0\n",
     r"non-finite normal nan", ("line", 2)),
    ("txt-blank", "a.txt", "\n \n# x\n", r"no data", None),
    # ---------------------------------------------------------------- H5
    ("h5-garbage", "a.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
     r"not a readable HDF5 file", None),
    ("h5-no-data", "a.h5", lambda t: h5(t, points=CLOUD), r"no 'data' dataset", None),
    ("h5-data-shape", "a.h5", lambda t: h5(t, data=np.zeros((2, 5, 4))),
     r"expected 'data' of shape \(S, N, 3\), got \(2, 5, 4\)", None),
    ("h5-label-shape", "a.h5", lambda t: h5(t, data=CLOUD, label=np.zeros(3, int)),
     r"expected 'label' of shape \(2,\) or \(2, 1\), got \(3,\)", None),
    ("h5-label-float", "a.h5",
     lambda t: h5(t, data=CLOUD, label=np.array([0.5, 1.0])),
     r"'label' holds non-integer values", None),
    ("h5-nan", "a.h5", lambda t: h5(t, data=np.full((2, 5, 3), np.nan)),
     r"non-finite coordinate nan \(row 0\)", None),
    ("h5-normal-shape", "a.h5",
     lambda t: h5(t, data=CLOUD, normal=np.zeros((2, 4, 3))),
     r"expected 'normal' of the shape of 'data'", None),
    ("h5-string", "a.h5", lambda t: h5(t, data=np.array([b"abc"])),
     r"expected a numeric 'data' dataset", None),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, content, message, where", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_file_raises_read_error(tmp_path, name, content, message, where):
    if callable(content):
        content = content(tmp_path)
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ReadError) as info:
        read(path)
    err = info.value
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: ")
    assert err.reason and len(str(err)) < 500
    assert re.search(message, str(err)), str(err)
    if where is None:
        assert err.line is None and err.offset is None
    elif where is ANY:
        assert err.line is not None or err.offset is not None
    else:
        kind, value = where
        assert getattr(err, kind) is not None
        if value is not ANY:
            assert getattr(err, kind) == value
        assert f"{'line' if kind == 'line' else 'byte'} {getattr(err, kind)}: " in str(
            err
        )


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
