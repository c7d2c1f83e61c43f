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
better on all validation users: the re-weighting the critic can learn must help here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...evaluation import Evaluator
from ...experiments.ract import PROTOCOL, make_trainer
from ...models.multvae import MultVAEConfig
from ...models.ract import CriticConfig, RaCTConfig, RaCTTrainer
from ..interactions import Interactions
from ..splits import heldout_users
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


def mechanism_config() -> RaCTConfig:
    """A two-dimensional Mult-VAE actor (too small to fit both kinds of users), stage 1 to its
    validation best (patience 20, far from its epoch cap), stage 3 at a fine-tuning rate of 3e-3."""
    return RaCTConfig(actor=MultVAEConfig(hidden_dims=(), latent_dim=2, batch_size=100,
                                          anneal_steps=2000),
                      critic=CriticConfig(lr=1e-3), actor_epochs=300, critic_epochs=60,
                      critic_min_epochs=10, finetune_epochs=20, finetune_lr=3e-3,
                      patience=20)


def run_mechanism(seed: int = 0, config: RaCTConfig | None = None, n_valid: int = 200,
                  **sizes) -> RaCTTrainer:
    """The three stages on `make_ract_mechanism` (held-out users, 80/20 fold-in, selection on
    validation NDCG@100 over all validation users); the trainer holds each stage's result."""
    data = make_ract_mechanism(seed=seed, **sizes)
    split = heldout_users(data, n_valid, n_valid, fold_in=0.8, seed=seed)
    valid = Evaluator(split.valid, PROTOCOL, split.n_items)
    trainer = make_trainer(split, config or mechanism_config(), valid, seed)
    trainer.run()
    return trainer
