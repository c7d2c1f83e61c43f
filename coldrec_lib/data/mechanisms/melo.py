"""MELO's mechanism setting: ratings whose rare value follows its own learnable pattern, so that a
loss weighting *by rating value* must beat any single inner-step scale (`02_melo`, section
"Where the mechanism must help").

* Items fall into ``n_groups`` groups; every user dislikes one group, drawn at random.
* An item of the disliked group gets the rare rating ``rare_rating`` (1 star): the pattern a new
  user's few 1-star ratings reveal, and which carries over to the next item of that group.
* Every other item gets a common rating (3, 4 or 5 stars with ``common_probabilities``), drawn
  independently of the user and the item: noise that an inner step can only overfit.
* A user's items are drawn uniformly, without repeats; the backbones see item ids only, so the
  disliked group is known from the support's ratings alone, through adaptation.

Uniform weighting must trade the signal of the few rare positions against the noise of the many
common ones: one step size for both. A learned weight by rating value can take big steps on the
rare positions and small ones on the noise.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..interactions import Interactions


def make_melo_mechanism(n_users: int = 1200, n_items: int = 80, n_groups: int = 6,
                        length: int = 16, rare_rating: int = 1,
                        common_probabilities: tuple[float, float, float] = (0.25, 0.5, 0.25),
                        seed: int = 0) -> Interactions:
    """``n_users`` users with ``length`` ratings each (see the module docstring); the user's
    disliked group is kept in the column ``disliked``, each item's group in ``group``."""
    if not 0 < length <= n_items:
        raise ValueError(f"length must be in 1..n_items={n_items}; got {length}")
    rng = np.random.default_rng(seed)
    group = rng.permutation(np.arange(n_items) % n_groups)
    disliked = rng.integers(0, n_groups, n_users)
    items = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :length]  # no repeats
    common = rng.choice([3, 4, 5], size=items.shape, p=list(common_probabilities))
    ratings = np.where(group[items] == disliked[:, None], rare_rating, common)
    users = np.repeat(np.arange(n_users), length)
    frame = pd.DataFrame({"user": users + 1, "item": items.ravel() + 1,
                          "rating": ratings.ravel().astype(float),
                          "timestamp": np.tile(np.arange(length), n_users) + 1_000_000_000,
                          "group": group[items.ravel()], "disliked": disliked[users]})
    return Interactions.from_frame(frame, name="melo-mechanism", source="MELO mechanism generator")
