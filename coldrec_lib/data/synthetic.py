"""A seeded synthetic dataset with real structure: the stand-in for real data in tests and smoke
runs (documented in `00_foundations`, section "Synthetic data").

How a user's sequence is generated:

* Items live in ``n_clusters`` clusters (their "genre"). Within a cluster, item popularity follows
  a power law (``zipf``), and clusters themselves differ in size of audience.
* Every user belongs to one of ``n_groups`` context groups (the "scenario"). A group has a typical
  *transition shift* ``s``: after an item of cluster ``c`` the user moves to cluster
  ``(c + s) mod n_clusters``; shifts are chosen so that a user cycles through at most
  ``max_cycle`` clusters (a taste a collaborative model can learn). Each user keeps the group's shift with probability
  ``group_loyalty`` and otherwise has a personal one, so transitions differ per user and a few
  observed transitions reveal them (what MetaTL's relation vector is meant to capture).
* At each step the user follows the shift with probability ``follow``; otherwise they jump to a
  cluster drawn from their taste. The item inside the cluster is drawn by popularity among the
  items they have not seen yet (no repeats).
* Ratings depend on the user (bias), the item (quality) and whether the item's cluster is one of
  the user's favourites. Users start at random times, so a cut time separates warm from new users.

A model that learns the transitions beats popularity clearly; a random or broken one does not.
"""
from __future__ import annotations

from math import gcd

import numpy as np
import pandas as pd

from .interactions import Interactions


def clustered_popularity(rng: np.random.Generator, n_items: int, n_clusters: int,
                         zipf: float) -> tuple[np.ndarray, np.ndarray]:
    """Items dealt evenly into ``n_clusters`` clusters at random, and a Zipf popularity
    ``rank ** -zipf`` by each item's random rank within its cluster."""
    cluster = rng.permutation(np.arange(n_items) % n_clusters)
    rank_in_cluster = np.empty(n_items)
    for c in range(n_clusters):
        members = np.flatnonzero(cluster == c)
        rank_in_cluster[members] = rng.permutation(len(members)) + 1
    return cluster, rank_in_cluster ** -zipf


def make_synthetic(n_users: int = 600, n_items: int = 400, n_clusters: int = 12,
                   n_groups: int = 4, min_len: int = 8, max_len: int = 40, follow: float = 0.75,
                   group_loyalty: float = 0.7, zipf: float = 1.0, max_cycle: int = 4,
                   seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    cluster, popularity = clustered_popularity(rng, n_items, n_clusters, zipf)
    cluster_appeal = rng.dirichlet(np.full(n_clusters, 2.0))

    group = rng.integers(n_groups, size=n_users)
    shifts = np.array([s for s in range(1, n_clusters) if n_clusters // gcd(s, n_clusters) <= max_cycle]
                      or list(range(1, n_clusters)))
    group_shift = rng.choice(shifts, size=n_groups, replace=len(shifts) < n_groups)
    own_shift = rng.choice(shifts, size=n_users)
    shift = np.where(rng.random(n_users) < group_loyalty, group_shift[group], own_shift)
    taste = rng.dirichlet(np.full(n_clusters, 0.3), size=n_users) * cluster_appeal
    taste /= taste.sum(1, keepdims=True)
    lengths = np.minimum(min_len + rng.geometric(1 / (0.4 * (max_len - min_len) + 1), n_users),
                         max_len)
    lengths = np.minimum(lengths, n_items)

    in_cluster = cluster[None, :] == np.arange(n_clusters)[:, None]  # [C, I]
    seen = np.zeros((n_users, n_items), dtype=bool)
    items = np.zeros((n_users, lengths.max()), dtype=np.int64)
    current = _draw(taste, rng)
    for t in range(lengths.max()):
        if t > 0:
            jump = rng.random(n_users) >= follow
            current = np.where(jump, _draw(taste, rng), (current + shift) % n_clusters)
        weight = popularity[None, :] * in_cluster[current] * ~seen
        empty = weight.sum(1) == 0  # cluster exhausted: any unseen item by popularity
        weight[empty] = popularity[None, :] * ~seen[empty]
        items[:, t] = _draw(weight / weight.sum(1, keepdims=True), rng)
        seen[np.arange(n_users), items[:, t]] = True
        current = cluster[items[:, t]]

    rows = np.arange(lengths.max())[None, :] < lengths[:, None]
    user_of_row = np.broadcast_to(np.arange(n_users)[:, None], items.shape)[rows]
    item_of_row = items[rows]
    favourite = np.argsort(-taste, axis=1)[:, :3]
    liked = (favourite[user_of_row] == cluster[item_of_row][:, None]).any(1)
    score = (3.4 + rng.normal(0, 0.5, n_users)[user_of_row] + rng.normal(0, 0.5, n_items)[item_of_row]
             + 0.8 * liked + rng.normal(0, 0.5, len(item_of_row)))
    day = 86_400
    start = rng.integers(0, 200 * day, n_users)
    gaps = rng.exponential(day, size=items.shape).cumsum(1).astype(np.int64)
    frame = pd.DataFrame({
        "user": user_of_row + 1,
        "item": item_of_row + 1,
        "rating": np.clip(np.round(score), 1, 5),
        "timestamp": (start[:, None] + gaps)[rows] + 1_000_000_000,
        "group": group[user_of_row],
    })
    features = pd.DataFrame({"genres": [(f"genre{c}",) for c in cluster], "cluster": cluster},
                            index=np.arange(1, n_items + 1))
    return Interactions.from_frame(frame, name="synthetic", item_features=features,
                                   source="synthetic generator")


def _draw(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of a [N, C] probability matrix."""
    cumulative = probabilities.cumsum(1)
    u = rng.random((len(probabilities), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < u).sum(1), probabilities.shape[1] - 1)


def make_scenario_synthetic(n_users: int = 3000, n_items: int = 1500, n_topics: int = 30,
                            dim: int = 16, n_modes: int = 4, n_scenarios: int = 400,
                            topics_per_scenario: int = 4, users_per_scenario: int = 40,
                            picks: int = 5, noise: float = 1.0, seed: int = 0
                            ) -> tuple[Interactions, dict[str, list]]:
    """Scenario-specific cold start (`03_cmml`, section "Scenarios"): the stand-in for the
    papers' non-public scenario data.

    Items live in ``n_topics`` topics (item vector = topic centre + noise, ``dim`` dimensions);
    users have vectors too. A scenario has one of ``n_modes`` *modes* (a linear map
    ``A_m = I + R_m / sqrt(dim)`` of the user vector, ``R_m`` random: a shared taste with a
    mode-specific twist, so the same user wants different things in different scenarios), a
    candidate pool (the items of ``topics_per_scenario`` topics) and ``users_per_scenario`` users,
    each picking their top ``picks`` candidates by ``(A_m u) . i`` plus Gumbel noise of scale
    ``noise``. A scenario model that reads the mode off a few support pairs beats one that cannot.

    Returns the interactions (implicit, column ``scenario``; item features: ``genres`` = the
    item's topic) and the scenario definitions ``{name: candidate raw item ids}`` (items nobody
    picked anywhere are not in the data, so they are left out of the pools).
    """
    rng = np.random.default_rng(seed)
    topic = rng.integers(n_topics, size=n_items)
    items = rng.normal(size=(n_topics, dim))[topic] + 0.5 * rng.normal(size=(n_items, dim))
    users = rng.normal(size=(n_users, dim))
    modes = np.eye(dim) + rng.normal(size=(n_modes, dim, dim)) / np.sqrt(dim)
    rows, definitions = [], {}
    for s in range(n_scenarios):
        pool = np.flatnonzero(np.isin(topic, rng.choice(n_topics, topics_per_scenario,
                                                        replace=False)))
        who = rng.choice(n_users, users_per_scenario, replace=False)
        mode = rng.integers(n_modes)
        score = (users[who] @ modes[mode].T) @ items[pool].T
        score += noise * rng.gumbel(size=score.shape)
        top = np.argsort(-score, axis=1)[:, :picks]
        name = f"scenario {s:03d} (mode {mode})"
        definitions[name] = pool + 1
        rows.append(pd.DataFrame({"user": np.repeat(who + 1, picks), "item": pool[top].ravel() + 1,
                                  "timestamp": s, "scenario": name}))
    frame = pd.concat(rows, ignore_index=True)
    present = set(frame["item"].tolist())
    definitions = {name: [i for i in pool.tolist() if i in present]
                   for name, pool in definitions.items()}
    features = pd.DataFrame({"genres": [(f"topic{t}",) for t in topic], "topic": topic},
                            index=np.arange(1, n_items + 1))
    # a user may pick the same item in two scenarios: two interactions, both kept
    data = Interactions.from_frame(frame, rating=None, name="synthetic-scenarios",
                                   item_features=features, source="synthetic generator",
                                   duplicates="keep")
    return data, definitions
