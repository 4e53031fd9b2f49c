"""Property-based: random and mutated bytes only ever raise ReadError, never hang.

A successful read must still honour the Record contract (finite float32
coordinates, faces inside the vertex list).
"""

from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import itnet_geo.io.off as off_module
import itnet_geo.io.txt as txt_module
from itnet_geo.io import SUPPORTED_EXTENSIONS, ReadError, read

FAST = settings(
    deadline=2000,  # ms per example: a reader that loops or allocates wildly fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
TEXT_BASES = [
    "mesh.off",
    "mesh.obj",
    "ascii.ply",
    "ascii.pcd",
    "cloud.txt",
    "cloud.csv",
]
ALL_BASES = TEXT_BASES + ["le.ply", "be.ply", "binary.pcd", "cloud.npy", "batch.h5"]
TOKENS = [
    "nan", "inf", "-inf", "-1", "0", "3", "4", "1e40", "99999999999999999999",
    "1000000000000", "x", "", " ", "\n", "#", "/", "//", "0.5", "-0", "\x00",
    "\xff", "OFF", "end_header", "DATA", "binary", "f", "v", "3 0 1 2",
]  # fmt: skip


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check(path) -> None:
    """Read; success must satisfy the contract, failure must be a ReadError."""
    try:
        rec = read(path)
    except ReadError as err:
        assert err.path == str(path)
        assert str(err).startswith(f"{path}: ") and err.reason
        return
    assert rec.pos.dtype == np.float32 and rec.pos.shape[-1] == 3
    assert rec.pos.size > 0 and np.isfinite(rec.pos).all()
    if rec.normal is not None:
        assert rec.normal.shape == rec.pos.shape and np.isfinite(rec.normal).all()
    if rec.face is not None:
        assert rec.face.dtype == np.int64 and rec.face.shape[1] == 3
        assert rec.face.size == 0 or (
            rec.face.min() >= 0 and rec.face.max() < rec.pos.shape[0]
        )


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """Apply 1-4 byte-level edits: flip, overwrite, insert, delete, truncate, repeat."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "cut":
            del data[at:]
        elif kind == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@st.composite
def token_mutated(draw, base: bytes) -> bytes:
    """Replace, drop or duplicate the space-separated tokens and lines of a text."""
    lines = base.decode().split("\n")
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["token", "drop", "dup"]))
        if kind == "token":
            tokens = lines[row].split(" ")
            col = draw(st.integers(0, len(tokens) - 1))
            tokens[col] = draw(st.sampled_from(TOKENS))
            lines[row] = " ".join(tokens)
        elif kind == "drop" and len(lines) > 1:
            del lines[row]
        elif kind == "dup":
            lines.insert(row, lines[row])
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
@FAST
@given(data=st.binary(max_size=300))
def test_random_bytes(scratch, ext, data):
    path = scratch / f"random{ext}"
    path.write_bytes(data)
    check(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ALL_BASES)
@settings(FAST, max_examples=200)
@given(data=st.data())
def test_mutated_valid_files(scratch, valid_files, name, data):
    content = data.draw(mutated(valid_files[name]))
    path = scratch / f"mutated-{name}"
    path.write_bytes(content)
    check(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", TEXT_BASES)
@settings(FAST, max_examples=200)
@given(data=st.data())
def test_token_mutated_text_files(scratch, valid_files, name, data):
    content = data.draw(token_mutated(valid_files[name]))
    path = scratch / f"tokens-{name}"
    path.write_bytes(content)
    check(path)


def outcome(path):
    try:
        rec = read(path)
    except ReadError as err:
        return ("error", str(err))
    arrays = (rec.pos, rec.face, rec.normal)
    return ("ok",) + tuple(
        None if a is None else (a.shape, a.tobytes()) for a in arrays
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["mesh.off", "cloud.txt", "cloud.csv"])
@settings(FAST, max_examples=150)
@given(data=st.data())
def test_fast_paths_agree_with_line_by_line(scratch, valid_files, name, data):
    base = valid_files[name]
    content = data.draw(st.one_of(token_mutated(base), mutated(base)))
    path = scratch / f"agree-{name}"
    path.write_bytes(content)
    fast = outcome(path)
    with (
        mock.patch.object(off_module, "_read_plain_triangles", return_value=None),
        mock.patch.object(txt_module, "_read_regular", return_value=None),
    ):
        slow = outcome(path)
    assert fast == slow


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ALL_BASES)
@settings(FAST, max_examples=5000, derandomize=False)
@given(data=st.data())
def test_mutated_valid_files_long(scratch, valid_files, name, data):
    content = data.draw(mutated(valid_files[name]))
    path = scratch / f"long-{name}"
    path.write_bytes(content)
    check(path)
