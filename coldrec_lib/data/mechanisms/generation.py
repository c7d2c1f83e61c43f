"""Item chains: the setting where generating the next ten items must beat one-pass top-K
(`05_autoregressive_generation`, section "Where the mechanism must help").

The catalogue is one cycle of items in a random order: every item has a *main* successor (the
next item of the cycle) and a *branch* successor (a random other item of the cycle). A user starts
at a random item and at each step goes to the main successor with probability ``follow``, else to
the branch; a successor already seen sends the user to the other one, and when both are seen, to
a random unseen item (no repeats). So the item at horizon position j is, with probability about
``follow ** j``, the j-th main successor of the last history item: generation finds it by
feeding each generated item back, while one forward pass from the history only knows position 1
(its ten best items are the two successors of the last item and noise).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..interactions import Interactions


def make_chains(n_users: int = 1000, n_items: int = 200, min_len: int = 30, max_len: int = 40,
                follow: float = 0.85, seed: int = 0) -> Interactions:
    """``n_users`` sequences of ``min_len..max_len`` items walking the item chains (module
    docstring); ``item_features`` has each item's ``main`` and ``branch`` successor (raw ids)."""
    if not 0 < follow <= 1:
        raise ValueError(f"follow must be in (0, 1]; got {follow}")
    if not 2 <= min_len <= max_len <= n_items:
        raise ValueError(f"need 2 <= min_len <= max_len <= n_items; got min_len={min_len}, "
                         f"max_len={max_len}, n_items={n_items}")
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(n_items)
    main = np.empty(n_items, dtype=np.int64)
    main[cycle] = np.roll(cycle, -1)
    # the branch is any item but the item itself and its main successor
    branch = (main + rng.integers(1, n_items - 1, n_items)) % n_items
    branch = np.where(branch == np.arange(n_items), (branch + 1) % n_items, branch)
    branch = np.where(branch == main, (branch + 1) % n_items, branch)

    lengths = rng.integers(min_len, max_len + 1, n_users)
    users = np.arange(n_users)
    seen = np.zeros((n_users, n_items), dtype=bool)
    items = np.zeros((n_users, max_len), dtype=np.int64)
    current = rng.integers(n_items, size=n_users)
    for t in range(max_len):
        if t > 0:
            first = np.where(rng.random(n_users) < follow, main[current], branch[current])
            other = np.where(first == main[current], branch[current], main[current])
            unseen = rng.random((n_users, n_items)) * ~seen
            current = np.where(~seen[users, first], first,
                               np.where(~seen[users, other], other, unseen.argmax(1)))
        items[:, t] = current
        seen[users, current] = True

    rows = np.arange(max_len)[None, :] < lengths[:, None]
    frame = pd.DataFrame({"user": np.broadcast_to(users[:, None] + 1, items.shape)[rows],
                          "item": items[rows] + 1,
                          "timestamp": np.broadcast_to(np.arange(max_len), items.shape)[rows]})
    features = pd.DataFrame({"main": main + 1, "branch": branch + 1},
                            index=np.arange(1, n_items + 1))
    return Interactions.from_frame(frame, rating=None, name="item chains",
                                   item_features=features, source="item chain generator")
