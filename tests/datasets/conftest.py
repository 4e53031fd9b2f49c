from pathlib import Path

import pytest
from shape_files import (
    CUBE_F,
    CUBE_V,
    TETRA_F,
    TETRA_V,
    cloud,
    write_npy,
    write_off,
)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def off_root(tmp_path: Path) -> Path:
    """Official OFF layout: cube (2 train, 1 test), tetra (1 train, 1 test)."""
    root = tmp_path / "off"
    write_off(root / "cube" / "train" / "cube_0001.off", CUBE_V, CUBE_F)
    write_off(root / "cube" / "train" / "cube_0002.off", CUBE_V * 2, CUBE_F)
    write_off(root / "cube" / "test" / "cube_0003.off", CUBE_V, CUBE_F)
    write_off(root / "tetra" / "train" / "tetra_0001.off", TETRA_V, TETRA_F)
    write_off(root / "tetra" / "test" / "tetra_0002.off", TETRA_V, TETRA_F)
    return root


@pytest.fixture
def npy_root(tmp_path: Path) -> Path:
    """Per-shape npy clouds, train only: a 3 b 2 shapes of 100 / 40 points."""
    root = tmp_path / "npy"
    for i in range(3):
        write_npy(root / "a" / "train" / f"a_{i:04d}.npy", cloud(i, 100))
    for i in range(2):
        write_npy(root / "b" / "train" / f"b_{i:04d}.npy", cloud(10 + i, 40))
    return root


@pytest.fixture(scope="session")
def realdata_cache(tmp_path_factory) -> Path:
    """One cache for all real-data tests: ModelNet40 is processed once."""
    return tmp_path_factory.mktemp("realdata-cache")
