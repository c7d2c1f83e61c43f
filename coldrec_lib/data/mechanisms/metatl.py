"""Where MetaTL's inner step should help (`01_metatl`, section "Where the mechanism must help"):
every user walks through item space by their own translation, and K items reveal it.

Items are points spread uniformly over the unit box of ``space_dim`` dimensions. A user has a
personal translation ``v_u`` (a uniformly random direction, length ``step``) and starts at an
item; each next item is the unseen item nearest to ``x_prev + v_u + noise``. So a user's
transitions are the paper's TransE picture, ``e_next ~ e_prev + r_u``, with a different ``r_u``
for every user: the K-1 support transitions are the only way to know it, and a new (cold-start)
user's translation was never seen in training. Users start at random times, at a point from
which their whole walk stays inside the box.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..interactions import Interactions


def make_translation_synthetic(n_users: int = 2000, n_items: int = 600, space_dim: int = 2,
                               length: int = 8, step: float = 0.12, noise: float = 0.01,
                               seed: int = 0) -> Interactions:
    """``n_users`` walks of ``length`` items each (implicit feedback). Item features:
    ``position`` (the item's point); user features: ``translation`` (the user's ``v_u``)."""
    rng = np.random.default_rng(seed)
    points = rng.random((n_items, space_dim))
    direction = rng.normal(size=(n_users, space_dim))
    translation = step * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    travel = translation * (length - 1)  # the walk's extent: start where it stays in the box
    low, high = np.maximum(0.0, -travel), np.minimum(1.0, 1.0 - travel)
    target = low + (high - low) * rng.random((n_users, space_dim))
    seen = np.zeros((n_users, n_items), dtype=bool)
    items = np.zeros((n_users, length), dtype=np.int64)
    for t in range(length):
        distance = ((points[None, :, :] - target[:, None, :]) ** 2).sum(-1)
        distance[seen] = np.inf
        items[:, t] = distance.argmin(1)
        seen[np.arange(n_users), items[:, t]] = True
        target = points[items[:, t]] + translation + noise * rng.normal(size=translation.shape)
    start = rng.integers(0, 1_000_000, n_users)
    frame = pd.DataFrame({"user": np.repeat(np.arange(n_users) + 1, length),
                          "item": items.ravel() + 1,
                          "timestamp": (start[:, None] + np.arange(length)).ravel()})
    items_features = pd.DataFrame({"position": list(points)}, index=np.arange(1, n_items + 1))
    user_features = pd.DataFrame({"translation": list(translation)},
                                 index=np.arange(1, n_users + 1))
    return Interactions.from_frame(frame, rating=None, name="synthetic-translations",
                                   item_features=items_features, user_features=user_features,
                                   source="synthetic generator")
