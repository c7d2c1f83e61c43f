"""Where CMML's context must help (`03_cmml`, section "Where the mechanism must help").

Scenarios in the spirit of `make_scenario_synthetic`, with the generator's own user and item
vectors as the frozen embeddings (so the models learn only the scenario part). A scenario has
one of ``n_modes`` *modes*; a user of a mode-``m`` scenario picks their top ``picks`` candidates
by

    score(u, i) = (A_m u) . i  +  preference * (p_m . i)  +  Gumbel noise,

``A_m = I + twist * R_m / sqrt(dim)`` (a mode-specific twist of every user's taste) and ``p_m`` a
mode's preferred item direction (shared by the scenario's users). Both parts are the same in
every scenario of a mode, so a handful of support pairs names the mode and a model that reads it
ranks better than one that cannot: the global model averages the four modes, support popularity
only sees which of the pool's items the support named.

The twist alone is a *second-order* signal (users are centred, so the positives' mean item does
not depend on the mode): the paper's context encoders (a mean of per-pair MLP outputs, a GRU)
did not learn to read it from 64 support pairs in our runs, while gradient steps on the support
(MAML) do read it, their gradient being a sum of user-item outer products. The preferred
direction is the first-order part a context encoder can read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..scenarios import PretrainedEmbeddings, ScenarioSet, ScenarioSplit


@dataclass
class ModeScenarios:
    split: ScenarioSplit
    embeddings: PretrainedEmbeddings  # the generator's vectors, unit root-mean-square entries
    modes: dict[str, np.ndarray]      # train / valid / test: each scenario's mode


def mode_scenarios(n_train: int = 2000, n_valid: int = 100, n_test: int = 100,
                   n_users: int = 3000, n_items: int = 1500, n_topics: int = 30, dim: int = 16,
                   n_modes: int = 4, topics_per_scenario: int = 4, users_per_scenario: int = 40,
                   picks: int = 5, twist: float = 1.0, preference: float = 1.0,
                   noise: float = 1.0, seed: int = 0) -> ModeScenarios:
    """Training, validation and test scenarios drawn from the same modes (see the module doc).
    Held-out scenarios split their users in half as usual (`ScenarioSet.eval_set`); a (user,
    item) pair of a held-out scenario is removed from the training scenarios."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(n_topics, size=n_items)
    items = rng.normal(size=(n_topics, dim))[topic] + 0.5 * rng.normal(size=(n_items, dim))
    users = rng.normal(size=(n_users, dim))
    twists = np.eye(dim) + twist * rng.normal(size=(n_modes, dim, dim)) / np.sqrt(dim)
    preferred = rng.normal(size=(n_modes, dim))
    n = n_train + n_valid + n_test
    mode = rng.integers(n_modes, size=n)
    pairs, candidates = [], []
    for s in range(n):
        pool = np.flatnonzero(np.isin(topic, rng.choice(n_topics, topics_per_scenario,
                                                        replace=False)))
        who = rng.choice(n_users, users_per_scenario, replace=False)
        m = mode[s]
        score = (users[who] @ twists[m].T + preference * preferred[m]) @ items[pool].T
        score += noise * rng.gumbel(size=score.shape)
        top = np.argsort(-score, axis=1)[:, :picks]
        pairs.append((np.full(top.size, s), np.repeat(who, picks), pool[top].ravel() + 1))
        candidates.append((np.full(len(pool), s), pool + 1))
    pairs = pd.DataFrame(dict(zip(("scenario", "user", "item"), map(np.concatenate, zip(*pairs)))))
    candidates = pd.DataFrame(dict(zip(("scenario", "item"),
                                       map(np.concatenate, zip(*candidates)))))
    names = [f"scenario {s} (mode {m})" for s, m in enumerate(mode)]
    every = ScenarioSet.from_tables(pairs, candidates, names, n_users, n_items, min_users=4,
                                    support=512, name="mode scenarios")
    parts = {"train": np.arange(n_train), "valid": np.arange(n_train, n_train + n_valid),
             "test": np.arange(n_train + n_valid, n)}
    valid = every.subset(parts["valid"], "valid")
    test = every.subset(parts["test"], "test")
    train = every.subset(parts["train"], "train",
                         drop_pairs=np.union1d(valid.pair_keys(), test.pair_keys()))
    user_table = torch.tensor(users, dtype=torch.float32)
    item_table = torch.cat([torch.zeros(1, dim), torch.tensor(items, dtype=torch.float32)])
    embeddings = PretrainedEmbeddings(user_table / user_table.pow(2).mean().sqrt(),
                                      item_table / item_table[1:].pow(2).mean().sqrt())
    return ModeScenarios(ScenarioSplit(train, valid, test), embeddings,
                         {name: mode[index] for name, index in parts.items()})
