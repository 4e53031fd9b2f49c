import numpy as np
import pytest

from itnet_geo.io import ReadError, read_obj

SQUARE = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"


def write(tmp_path, text):
    path = tmp_path / "m.obj"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "face", ["f 1 2 3", "f 1/1 2/2 3/3", "f 1//1 2//2 3//3", "f 1/1/1 2/2/2 3/3/3"]
)
def test_face_corner_forms(tmp_path, face):
    rec = read_obj(
        write(tmp_path, SQUARE + "vt 0 0\nvt 1 0\nvt 1 1\nvn 0 0 1\n" + face)
    )
    assert rec.face.tolist() == [[0, 1, 2]]


def test_negative_indices_are_relative_to_vertices_so_far(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nf -3 -2 -1\nv 0 1 0\nf -4 -2 -1\n"
    rec = read_obj(write(tmp_path, text))
    assert rec.face.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_polygons_are_fan_triangulated(tmp_path):
    rec = read_obj(write(tmp_path, SQUARE + "v 2 0 0\nf 1 2 3 4\nf 1 2 5 3 4\n"))
    assert rec.face.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4], [0, 4, 2], [0, 2, 3]]


def test_other_statements_are_ignored(tmp_path):
    text = (
        "# exported\nmtllib scene.mtl\no cube\ng side\ns 1\nusemtl red\n"
        + SQUARE
        + "vt 0.5 0.5\nvn 0 0 1\nvp 0.1\nl 1 2\np 3\ns off\nf 1 2 3 # tri\n"
    )
    rec = read_obj(write(tmp_path, text))
    assert rec.pos.shape == (4, 3) and rec.face.tolist() == [[0, 1, 2]]
    assert rec.normal is None


def test_vertex_weight_colours_and_continuation(tmp_path):
    text = "v 0 0 0 1\nv 1 0 0 0.5 0.5 0.5\nv 0 1 0 1 0 0 1\nf 1 2 \\\n 3\n"
    rec = read_obj(write(tmp_path, text))
    np.testing.assert_array_equal(rec.pos, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert rec.face.tolist() == [[0, 1, 2]]


def test_vertex_only_file_has_no_faces(tmp_path):
    rec = read_obj(write(tmp_path, SQUARE))
    assert rec.face is None and rec.pos.shape == (4, 3)


def test_error_names_the_joined_line(tmp_path):
    with pytest.raises(ReadError, match=r"line 2: expected an integer face index"):
        read_obj(write(tmp_path, "v 0 0 0\nf 1 \\\n 1 q\n"))
