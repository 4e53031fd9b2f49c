import numpy as np
import pytest

from itnet_geo.io import read_txt

ROWS = np.array([[0.1, 0.2, 0.3, 0, 0, 1], [-1, 2, 3.5, 1, 0, 0]])


@pytest.mark.parametrize("sep", [",", ", ", " ", "\t", "  "])
def test_separators(tmp_path, sep):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(sep.join(f"{v:g}" for v in row) for row in ROWS) + "\n")
    rec = read_txt(path)
    np.testing.assert_allclose(rec.pos, ROWS[:, :3].astype(np.float32))
    np.testing.assert_allclose(rec.normal, ROWS[:, 3:])


def test_xyz_only_with_comments_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"# x,y,z\r\n0.1,0.2,0.3\r\n\r\n4,5,6 # last\r\n\r\n")
    rec = read_txt(path)
    np.testing.assert_allclose(rec.pos, [[0.1, 0.2, 0.3], [4, 5, 6]], rtol=1e-6)
    assert rec.normal is None and rec.face is None


def test_modelnet_normal_resampled_layout(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.uniform(-1, 1, size=(1000, 6))
    path = tmp_path / "airplane_0001.txt"
    np.savetxt(path, rows, fmt="%.6f", delimiter=",")
    rec = read_txt(path)
    assert rec.pos.shape == (1000, 3) and rec.normal.shape == (1000, 3)
    np.testing.assert_allclose(rec.normal, rows[:, 3:].astype(np.float32), atol=1e-6)
