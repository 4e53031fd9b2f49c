import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny test tensors: threads only add overhead

SHARED_DATA = Path(
    os.environ.get(
        "ITNET_GEO_SHARED_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data",
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real benchmark data; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cxx() -> str:
    """The C++ compiler torch.compile needs; skips the test where there is none."""
    from itnet_geo.ops.fused import cxx_compiler

    path = cxx_compiler()
    if path is None:
        pytest.skip("no C++ compiler for torch.compile")
    return path
