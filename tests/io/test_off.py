import numpy as np
import pytest

from itnet_geo.io import read_off

SQUARE = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"


def write(tmp_path, text, name="m.off"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(
    "header",
    ["OFF\n4 2 0\n", "OFF4 2 0\n", "OFF 4 2 0\n", "OFF4 2\n", "off\n4 2 0\n",
     "# ModelNet\nOFF\n\n# counts\n4 2 0\n"],
)  # fmt: skip
def test_headers_including_modelnet_glued_counts(tmp_path, header):
    rec = read_off(write(tmp_path, header + SQUARE + "3 0 1 2\n3 0 2 3\n"))
    assert rec.pos.shape == (4, 3) and rec.pos.dtype == np.float32
    assert rec.face.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_modelnet_style_file(tmp_path):
    # the first line of many ModelNet files: counts glued to the magic
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(490, 3)) * 100
    face = rng.integers(0, 490, size=(518, 3))
    text = "OFF490 518 0\n" + "".join(
        f"{x:.17g} {y:.17g} {z:.17g}\n" for x, y, z in pos
    )
    text += "".join(f"3 {a} {b} {c}\n" for a, b, c in face)
    rec = read_off(write(tmp_path, text))
    np.testing.assert_allclose(rec.pos, pos.astype(np.float32))
    np.testing.assert_array_equal(rec.face, face)


def test_comments_blank_lines_crlf_and_bom(tmp_path):
    text = (
        "\ufeffOFF # magic\r\n\r\n# a comment\r\n4 1 0 # counts\r\n"
        + SQUARE.replace("\n", " # v\r\n")
        + "\r\n3 0 1 2\r\n\r\n# end\r\n"
    )
    rec = read_off(write(tmp_path, text.encode("utf-8")))
    assert rec.face.tolist() == [[0, 1, 2]]
    np.testing.assert_array_equal(rec.pos[2], [1, 1, 0])


def test_polygons_are_fan_triangulated_in_file_order(tmp_path):
    text = "OFF\n6 3 0\n" + SQUARE + "2 0 0\n2 1 0\n"
    text += "4 0 1 2 3\n3 1 4 5\n5 0 1 4 5 2\n"
    rec = read_off(write(tmp_path, text))
    assert rec.face.tolist() == [
        [0, 1, 2], [0, 2, 3],  # quad
        [1, 4, 5],  # triangle
        [0, 1, 4], [0, 4, 5], [0, 5, 2],  # pentagon
    ]  # fmt: skip


@pytest.mark.parametrize("colour", ["255 0 0", "0.5 0.5 0.5 1.0", "7"])
def test_trailing_face_colours_are_skipped(tmp_path, colour):
    text = f"OFF\n4 2 0\n{SQUARE}3 0 1 2 {colour}\n4 0 1 2 3 {colour}\n"
    rec = read_off(write(tmp_path, text))
    assert rec.face.tolist() == [[0, 1, 2], [0, 1, 2], [0, 2, 3]]


def test_noff_normals_and_coff_colours(tmp_path):
    text = "NOFF\n3 1 0\n0 0 0 0 0 1\n1 0 0 0 1 0\n0 1 0 1 0 0\n3 0 1 2\n"
    rec = read_off(write(tmp_path, text))
    np.testing.assert_array_equal(rec.normal, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    text = "COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n0 1 0 0 0 0 0\n3 0 1 2\n"
    rec = read_off(write(tmp_path, text))
    assert rec.normal is None and rec.pos.shape == (3, 3)


def test_point_cloud_without_faces(tmp_path):
    rec = read_off(write(tmp_path, "OFF\n4 0 0\n" + SQUARE))
    assert rec.face is None and rec.pos.shape == (4, 3)


def test_string_and_path_arguments(tmp_path):
    path = write(tmp_path, "OFF\n4 0 0\n" + SQUARE)
    np.testing.assert_array_equal(read_off(str(path)).pos, read_off(path).pos)
