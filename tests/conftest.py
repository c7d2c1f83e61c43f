from pathlib import Path

import pytest

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
