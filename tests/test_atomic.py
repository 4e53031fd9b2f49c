import os

import pytest

from itnet_geo._atomic import atomic_open, write_atomic


def test_the_new_file_appears_whole_under_its_name(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("new")
        assert not path.exists()  # readers see nothing until the rename
        assert os.path.dirname(f.name) == str(path.parent)  # same file system
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a.bin", b"old", durable=True)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(path) as f:
            f.write(b"partial")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a.txt", "é")
    finally:
        os.umask(old)
    assert path.read_bytes() == "é".encode()
    assert path.stat().st_mode & 0o777 == 0o644


def test_refuses_a_mode_that_does_not_write(tmp_path):
    with pytest.raises(ValueError, match="mode must contain 'w'"):
        with atomic_open(tmp_path / "a.txt", "r"):
            pass
