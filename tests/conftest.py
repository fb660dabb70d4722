import os
from pathlib import Path

import pytest
import torch

# one thread per pytest-xdist worker (the workers share the cores), else up to two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir():
    """Real data: RECNB_DATA_DIR, else ../shared/data beside the repo; skip when absent."""
    root = Path(os.environ.get("RECNB_DATA_DIR", SHARED))
    if not (root / "ml-100k" / "u.data").exists():
        pytest.skip(f"ml-100k not found under {root} (set RECNB_DATA_DIR)")
    return root


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on shared CI cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
