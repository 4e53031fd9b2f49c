import struct

import numpy as np
import pytest

from itnet_geo.io import ReadError, read_pcd
from itnet_geo.io.pcd import lzf_decompress

RNG = np.random.default_rng(0)
XYZ = (RNG.normal(size=(20, 3)) * 1e4).astype(np.float32)
NRM = RNG.normal(size=(20, 3)).astype(np.float32)


def lzf_compress(data: bytes) -> bytes:
    """Greedy LZF (liblzf format) compressor, to make binary_compressed fixtures."""
    out, literal, table, i = bytearray(), bytearray(), {}, 0

    def flush():
        while literal:
            chunk = literal[:32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
            del literal[:32]

    while i < len(data):
        key = data[i : i + 3]
        ref = table.get(key) if len(key) == 3 else None
        if len(key) == 3:
            table[key] = i
        if ref is not None and i - ref - 1 < 8192:
            length = 3
            while (
                i + length < len(data)
                and length < 264
                and data[ref + length] == data[i + length]
            ):
                length += 1
            flush()
            off, code = i - ref - 1, length - 2
            if code < 7:
                out.append((code << 5) | (off >> 8))
            else:
                out += bytes([(7 << 5) | (off >> 8), code - 7])
            out.append(off & 0xFF)
            i += length
        else:
            literal.append(data[i])
            i += 1
    flush()
    return bytes(out)


def header(fields, sizes, types, counts, points, mode, height=1):
    return (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\n"
        f"TYPE {' '.join(types)}\nCOUNT {' '.join(map(str, counts))}\n"
        f"WIDTH {points // height}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {points}\nDATA {mode}\n"
    ).encode()


def write(tmp_path, blob):
    path = tmp_path / "c.pcd"
    path.write_bytes(blob)
    return path


def test_lzf_roundtrip_and_overlapping_copy():
    data = b"abcabcabcabcabc" * 40 + bytes(range(256)) + b"\x00" * 1000
    packed = lzf_compress(data)
    assert len(packed) < len(data) // 2
    assert lzf_decompress(packed, len(data)) == data
    # literal "ab", then copy 6 bytes from 2 back (overlapping): "abababab"
    assert lzf_decompress(bytes([1]) + b"ab" + bytes([4 << 5, 1]), 8) == b"abababab"
    with pytest.raises(ValueError, match="longer than the declared size"):
        lzf_decompress(bytes([1]) + b"ab" + bytes([4 << 5, 1]), 7)


@pytest.mark.parametrize("mode", ["ascii", "binary", "binary_compressed"])
def test_modes_with_normals_padding_and_extra_fields(tmp_path, mode):
    # fields out of order, a 3-wide padding field and an rgb field to skip
    fields = ["normal_x", "normal_y", "normal_z", "_", "x", "y", "z", "rgb"]
    sizes = [4, 4, 4, 1, 4, 4, 4, 4]
    types = ["F", "F", "F", "U", "F", "F", "F", "U"]
    counts = [1, 1, 1, 3, 1, 1, 1, 1]
    n = len(XYZ)
    pad = np.zeros((n, 3), np.uint8)
    rgb = np.full(n, 0xFF8000, np.uint32)
    columns = [
        NRM[:, 0],
        NRM[:, 1],
        NRM[:, 2],
        pad,
        XYZ[:, 0],
        XYZ[:, 1],
        XYZ[:, 2],
        rgb,
    ]
    blob = header(fields, sizes, types, counts, n, mode)
    if mode == "ascii":
        rows = []
        for i in range(n):
            values = [f"{c[i]:.9g}" if c.ndim == 1 else "0 0 0" for c in columns]
            rows.append(" ".join(str(v) for v in values))
        blob += ("\n".join(rows) + "\n").encode()
    elif mode == "binary":
        layout = np.dtype(
            [(f"f{i}", "<" + ("u1" if f == "_" else ("u4" if f == "rgb" else "f4")),
              (c,)) for i, (f, c) in enumerate(zip(fields, counts, strict=True))]
        )  # fmt: skip
        rows = np.zeros(n, layout)
        for i, c in enumerate(columns):
            rows[f"f{i}"] = c.reshape(n, -1)
        blob += rows.tobytes()
    else:
        raw = b"".join(np.ascontiguousarray(c).tobytes() for c in columns)
        packed = lzf_compress(raw)
        blob += struct.pack("<II", len(packed), len(raw)) + packed
    rec = read_pcd(write(tmp_path, blob))
    np.testing.assert_array_equal(rec.pos, XYZ)
    np.testing.assert_array_equal(rec.normal, NRM)
    assert rec.face is None


def test_double_integer_fields_and_organised_cloud(tmp_path):
    n = 6
    blob = header(["x", "y", "z", "intensity"], [8, 8, 8, 2], ["F", "F", "F", "I"],
                  [1, 1, 1, 1], n, "binary", height=2)  # fmt: skip
    data = np.zeros(n, [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("i", "<i2")])
    data["x"] = np.arange(n)
    data["z"] = -np.arange(n)
    rec = read_pcd(write(tmp_path, blob + data.tobytes()))
    assert rec.pos[:, 0].tolist() == list(range(n)) and rec.normal is None


def test_missing_count_line_defaults_to_one(tmp_path):
    blob = (
        b"VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nHEIGHT 1\n"
        b"POINTS 2\nDATA ascii\n1 2 3\n4 5 6\n"
    )
    assert read_pcd(write(tmp_path, blob)).pos.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_nan_points_of_organised_clouds_are_refused(tmp_path):
    n = 4
    blob = header(["x", "y", "z"], [4, 4, 4], ["F", "F", "F"], [1, 1, 1], n, "binary")
    values = np.zeros((n, 3), "<f4")
    values[2] = np.nan
    with pytest.raises(ReadError, match="non-finite coordinate nan") as info:
        read_pcd(write(tmp_path, blob + values.tobytes()))
    assert info.value.offset == len(blob) + 2 * 12
