"""RaCT's mechanism setting (`04_ract`, section "Where the mechanism must help"): data on which
the likelihood spends the actor on users whose ranking it cannot improve.

Items fall into ``n_clusters`` clusters, with a power-law popularity inside each, and, by a
second partition unrelated to the first, into ``n_blocks`` blocks. Two kinds of users:

* *taste* users (most of them) pick 5-20 items (``taste_items``) from one cluster, by popularity;
* *heavy* users pick ``heavy_items`` items at random from one block: with many items each, they
  dominate the summed likelihood.

A Mult-VAE with a two-dimensional latent code cannot lay out both partitions, so maximum
likelihood spends it on the heavy users' blocks, while NDCG@100 averages over users, most of them
taste users. RaCT's critic sees ``|kept|``, ``|held-out|`` and the NLL, so it tells the two kinds
apart by their counts and learns how much NDCG each user's NLL buys: stage 3 re-weights the
likelihood towards the taste users. Trained on the taste users alone, the same actor ranks far
better on all validation users: the re-weighting the critic can learn must help here
(`experiments.ract.run_mechanism` trains the three stages on it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..interactions import Interactions
from ..synthetic import clustered_popularity

KINDS = ("taste", "heavy")


def make_ract_mechanism(n_taste: int = 1200, n_heavy: int = 300, n_items: int = 300,
                        n_clusters: int = 10, taste_items: tuple[int, int] = (5, 20),
                        n_blocks: int = 5, heavy_items: int = 50, zipf: float = 1.0,
                        seed: int = 0) -> Interactions:
    """Implicit interactions (column ``kind``: "taste" or "heavy"); item features: ``cluster``
    and ``block``."""
    rng = np.random.default_rng(seed)
    cluster, popularity = clustered_popularity(rng, n_items, n_clusters, zipf)
    block = rng.permutation(np.arange(n_items) % n_blocks)
    users, items, kinds = [], [], []
    for u in range(n_taste + n_heavy):
        if u < n_taste:
            members = np.flatnonzero(cluster == rng.integers(n_clusters))
            n = min(int(rng.integers(taste_items[0], taste_items[1] + 1)), len(members))
            weight = popularity[members] / popularity[members].sum()
            chosen = rng.choice(members, size=n, replace=False, p=weight)
        else:
            pool = np.flatnonzero(block == rng.integers(n_blocks))
            chosen = rng.choice(pool, size=min(heavy_items, len(pool)), replace=False)
        users.append(np.full(len(chosen), u + 1))
        items.append(chosen + 1)
        kinds.append(np.full(len(chosen), KINDS[u >= n_taste]))
    frame = pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items),
                          "kind": np.concatenate(kinds)})
    features = pd.DataFrame({"cluster": cluster, "block": block}, index=np.arange(1, n_items + 1))
    return Interactions.from_frame(frame, rating=None, timestamp=None, name="ract mechanism",
                                   item_features=features,
                                   source="synthetic generator")
