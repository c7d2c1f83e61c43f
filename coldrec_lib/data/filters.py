"""Filters applied before splitting: rating threshold, minimum counts, k-core.

Each returns a new `Interactions` with dense ids (the raw id maps follow the kept rows).
"""
from __future__ import annotations

import numpy as np

from .errors import DataError
from .interactions import Interactions


def filter_rating(data: Interactions, min_rating: float, strict: bool = True) -> Interactions:
    """Keep ratings ``> min_rating`` (``>=`` when ``strict=False``): e.g. RaCT keeps ratings > 3.5
    on MovieLens as implicit positives."""
    rating = data.frame["rating"].to_numpy()
    return _keep(data, rating > min_rating if strict else rating >= min_rating,
                 f"rating {'>' if strict else '>='} {min_rating}")


def filter_min_counts(data: Interactions, min_user: int = 1, min_item: int = 1) -> Interactions:
    """One pass: drop items with fewer than ``min_item`` interactions, then users with fewer than
    ``min_user`` (the order MELO and the generation paper use)."""
    frame = data.frame
    item_counts = np.bincount(frame["item"].to_numpy(), minlength=data.n_items + 1)
    keep = item_counts[frame["item"].to_numpy()] >= min_item
    user_counts = np.bincount(frame["user"].to_numpy()[keep], minlength=data.n_users)
    keep &= user_counts[frame["user"].to_numpy()] >= min_user
    return _keep(data, keep, f"min_user={min_user}, min_item={min_item}")


def k_core(data: Interactions, min_user: int = 5, min_item: int = 5) -> Interactions:
    """Repeat the count filter until every user has >= ``min_user`` and every item >= ``min_item``
    interactions (the fixed point)."""
    users, items = data.frame["user"].to_numpy(), data.frame["item"].to_numpy()
    keep = np.ones(len(users), dtype=bool)
    while True:
        item_counts = np.bincount(items[keep], minlength=data.n_items + 1)
        user_counts = np.bincount(users[keep], minlength=data.n_users)
        new_keep = keep & (item_counts[items] >= min_item) & (user_counts[users] >= min_user)
        if (new_keep == keep).all():
            break
        keep = new_keep
    return _keep(data, keep, f"{min_user}/{min_item}-core")


def _keep(data: Interactions, keep: np.ndarray, what: str) -> Interactions:
    if not keep.any():
        raise DataError(data.name, None, f"some interactions left after the filter {what}; "
                        "none are")
    return data.subset(keep)
