"""MELO's mechanism setting: ratings whose rare value follows its own learnable pattern, so that a
loss weighting *by rating value* must beat any single inner-step scale (`02_melo`, section
"Where the mechanism must help").

* Every user returns to a small personal pool of ``pool`` items (their sequence draws from it,
  with repeats) and dislikes ``disliked`` of them for good: those get the rare rating
  ``rare_rating`` (1 star) every time. A 1-star rating in the support set is a pattern that
  carries over to the user's next rating of that item.
* Every other rating is common (3, 4 or 5 stars with ``common_probabilities``), drawn afresh each
  time: noise that an inner step can only overfit.
* The backbones see item ids only, so which items a user dislikes is known from the support's
  ratings alone, through adaptation.

One step size must trade the signal of the rare positions against the noise of the common ones;
a learned weight by rating value can take big steps on the first and small ones on the second.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..interactions import Interactions


def make_melo_mechanism(n_users: int = 1000, n_items: int = 60, pool: int = 5, disliked: int = 1,
                        length: int = 12, rare_rating: int = 1,
                        common_probabilities: tuple[float, float, float] = (0.25, 0.5, 0.25),
                        seed: int = 0) -> Interactions:
    """``n_users`` users with ``length`` ratings each (see the module docstring); whether the
    user dislikes the item is kept in the column ``disliked``."""
    if not 0 < disliked < pool <= n_items:
        raise ValueError(f"need 0 < disliked < pool <= n_items; got disliked={disliked}, "
                         f"pool={pool}, n_items={n_items}")
    rng = np.random.default_rng(seed)
    pools = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :pool]  # first `disliked`: 1 star
    slot = rng.integers(0, pool, (n_users, length))
    items = np.take_along_axis(pools, slot, axis=1)
    common = rng.choice([3, 4, 5], size=items.shape, p=list(common_probabilities))
    ratings = np.where(slot < disliked, rare_rating, common)
    frame = pd.DataFrame({"user": np.repeat(np.arange(n_users), length) + 1,
                          "item": items.ravel() + 1, "rating": ratings.ravel().astype(float),
                          "timestamp": np.tile(np.arange(length), n_users) + 1_000_000_000,
                          "disliked": (slot < disliked).ravel()})
    return Interactions.from_frame(frame, name="melo-mechanism", duplicates="keep",
                                   source="MELO mechanism generator")
