import struct

import numpy as np
import pytest

from itnet_geo.io import read_ply

ENDIAN = {"binary_little_endian": "<", "binary_big_endian": ">"}
RNG = np.random.default_rng(0)
POS = RNG.normal(size=(6, 3)).astype(np.float32)
POLYS = [[0, 1, 2], [2, 3, 4, 5], [0, 2, 4]]  # mixed sizes: the row-by-row path
FAN = [[0, 1, 2], [2, 3, 4], [2, 4, 5], [0, 2, 4]]


def build(fmt, pos, polys, vertex_props=(), face_head="uchar int",
          face_name="vertex_indices", before="", after="", extra_rows=()):  # fmt: skip
    """A PLY with optional extra vertex properties (float, value 9) and elements."""
    header = f"ply\nformat {fmt} 1.0\n{before}element vertex {len(pos)}\n"
    header += "".join(f"property float {a}\n" for a in ("x", "y", "z", *vertex_props))
    header += f"element face {len(polys)}\nproperty list {face_head} {face_name}\n"
    header += after + "end_header\n"
    count_t, index_t = face_head.split()
    codes = {"uchar": "B", "ushort": "H", "int": "i", "uint": "I", "char": "b"}
    if fmt == "ascii":
        rows = list(extra_rows[:1])
        rows += [" ".join(map(str, (*p, *[9] * len(vertex_props)))) for p in pos]
        rows += [" ".join(map(str, (len(f), *f))) for f in polys]
        rows += list(extra_rows[1:])
        return (header + "\n".join(rows) + "\n").encode()
    e = ENDIAN[fmt]
    body = b"".join(extra_rows[:1])
    nv = 3 + len(vertex_props)
    body += b"".join(
        struct.pack(f"{e}{nv}f", *p, *[9] * len(vertex_props)) for p in pos
    )
    body += b"".join(
        struct.pack(f"{e}{codes[count_t]}{len(f)}{codes[index_t]}", len(f), *f)
        for f in polys
    )
    return header.encode() + body + b"".join(extra_rows[1:])


def write(tmp_path, blob):
    path = tmp_path / "m.ply"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_mixed_polygons_and_skipped_vertex_properties(tmp_path, fmt):
    rec = read_ply(write(tmp_path, build(fmt, POS, POLYS, ("red", "alpha"))))
    np.testing.assert_allclose(rec.pos, POS, rtol=1e-6)
    assert rec.face.tolist() == FAN and rec.normal is None


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize(
    "head", ["uchar int", "uchar uint", "ushort ushort", "char int"]
)
@pytest.mark.parametrize("name", ["vertex_indices", "vertex_index"])
def test_index_types_and_names(tmp_path, fmt, head, name):
    blob = build(fmt, POS, [[0, 1, 2], [3, 4, 5]], face_head=head, face_name=name)
    assert read_ply(write(tmp_path, blob)).face.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_extra_elements_before_and_after_are_skipped(tmp_path, fmt):
    before = "element material 1\nproperty list uchar float coeffs\nproperty int id\n"
    after = "element camera 1\nproperty float view_px\nproperty uint viewport\n"
    if fmt == "ascii":
        rows = ("3 0.5 0.25 1 7", "0.5 640")
    else:
        e = ENDIAN[fmt]
        rows = (
            struct.pack(f"{e}B3fi", 3, 0.5, 0.25, 1, 7),
            struct.pack(f"{e}fI", 0.5, 640),
        )
    blob = build(fmt, POS, POLYS, before=before, after=after, extra_rows=rows)
    rec = read_ply(write(tmp_path, blob))
    np.testing.assert_allclose(rec.pos, POS, rtol=1e-6)
    assert rec.face.tolist() == FAN


def test_pcl_normals_and_camera_element(tmp_path):
    # what pcl::io::savePLYFileBinary writes for a cloud with normals: no faces
    header = (
        b"ply\nformat binary_little_endian 1.0\ncomment PCL generated\n"
        b"obj_info is_cloud 1\nelement vertex 2\nproperty float x\nproperty float y\n"
        b"property float z\nproperty float normal_x\nproperty float normal_y\n"
        b"property float normal_z\nproperty float curvature\n"
        b"element camera 1\nproperty float view_px\nproperty float view_py\n"
        b"property float view_pz\nproperty float x_axis\nproperty float y_axis\n"
        b"property float z_axis\nproperty float focal\nproperty float scalex\n"
        b"property float scaley\nproperty float centerx\nproperty float centery\n"
        b"property int viewportx\nproperty int viewporty\nproperty float k1\n"
        b"property float k2\nend_header\n"
    )
    body = struct.pack("<7f", 1, 2, 3, 0, 0, 1, 0.1)
    body += struct.pack("<7f", 4, 5, 6, 0, 1, 0, 0.2)
    body += struct.pack("<11f2i2f", *[0.0] * 11, 640, 480, 0, 0)
    rec = read_ply(write(tmp_path, header + body))
    assert rec.pos.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert rec.normal.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert rec.face is None


def test_double_coordinates_and_empty_face_element(tmp_path):
    header = (
        b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty double x\n"
        b"property double y\nproperty double z\nelement face 0\n"
        b"property list uchar int vertex_indices\nend_header\n"
    )
    rec = read_ply(write(tmp_path, header + struct.pack(">6d", 1, 2, 3, 4, 5, 6.25)))
    assert rec.pos.tolist() == [[1, 2, 3], [4, 5, 6.25]] and rec.face is None


def test_uniform_faces_with_a_property_after_the_list(tmp_path):
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\n"
        b"property float y\nproperty float z\nelement face 2\n"
        b"property list uchar int vertex_indices\nproperty uchar red\nend_header\n"
    )
    body = np.zeros((4, 3), "<f4").tobytes()
    body += struct.pack("<B4iB", 4, 0, 1, 2, 3, 255) + struct.pack(
        "<B4iB", 4, 3, 2, 1, 0, 9
    )
    rec = read_ply(write(tmp_path, header + body))
    assert rec.face.tolist() == [[0, 1, 2], [0, 2, 3], [3, 2, 1], [3, 1, 0]]


def test_larger_random_mesh_matches_in_all_encodings(tmp_path):
    rng = np.random.default_rng(3)
    pos = rng.normal(size=(300, 3)).astype(np.float32)
    tri = rng.integers(0, 300, size=(500, 3)).tolist()
    recs = [
        read_ply(write(tmp_path, build(fmt, pos, tri)))
        for fmt in ("ascii", "binary_little_endian", "binary_big_endian")
    ]
    for rec in recs:
        np.testing.assert_allclose(rec.pos, pos, rtol=1e-6)
        assert rec.face.tolist() == tri


def test_nx_normals_among_other_properties(tmp_path):
    header = (
        b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float nx\n"
        b"property uchar red\nproperty float ny\nproperty float x\nproperty float nz\n"
        b"property float y\nproperty float z\nend_header\n"
    )
    rec = read_ply(write(tmp_path, header + b"1 255 0 7 0 8 9\n0 0 1 4 0 5 6\n"))
    assert rec.pos.tolist() == [[7, 8, 9], [4, 5, 6]]
    assert rec.normal.tolist() == [[1, 0, 0], [0, 1, 0]]
