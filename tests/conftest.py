from pathlib import Path

import pytest
import torch

from coldrec_lib.data import make_synthetic

SHARED_ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic(n_users=300, n_items=200, seed=0)


@pytest.fixture(scope="session")
def ml100k_folder():
    if not (SHARED_ML100K / "u.data").exists():
        pytest.skip("../shared/data/ml-100k is absent (a fresh clone has no ../shared)")
    return SHARED_ML100K


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """As in the notebooks and the CLI: small models on one CPU thread (benchmarks/)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
