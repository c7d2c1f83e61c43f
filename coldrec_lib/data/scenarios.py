"""Scenario-specific cold start (CMML, s2Meta): scenarios, their candidate items, tasks and the
frozen embeddings the scenario models read. Taught in `03_cmml`, section "Scenarios".

A *scenario* is a set of implicit (user, item) positives with its own candidate items: a
MovieLens genre in one time slice, or a scenario of the synthetic generator. Training,
validation and test scenarios are disjoint. User and item embeddings are pretrained by matrix
factorisation (BPR) on the training scenarios only and frozen; a pair that also belongs to a
validation or test scenario (a film of two genres) is removed from the training scenarios, so
neither the embeddings nor the scenario models ever see a held-out pair.

* training task (`ScenarioSet.sample`): support = up to ``support`` positive pairs (at most half
  of a small scenario's pairs), query = up to ``query`` other positive pairs; every positive gets
  sampled negatives from the scenario's candidates minus the user's items;
* validation / test scenario (`ScenarioSet.eval_set`): its users split in half (seeded); the
  first half's pairs (at most ``max_support``, a seeded random subset) are the support, and each
  user of the other half ranks *all* candidate items of the scenario.

Tensors of a batch of N scenarios are padded to the largest scenario of the batch, with masks.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch

from .errors import DataError
from .interactions import PAD, Interactions


# ---------------------------------------------------------------------- batches
@dataclass
class ScenarioBatch:
    """N scenarios' support (and, for training, query) pairs, padded. Users and items are
    internal ids; padding positions have ``mask`` False (and item PAD)."""

    support_users: torch.Tensor      # [N, S]
    support_items: torch.Tensor      # [N, S] positives
    support_negatives: torch.Tensor  # [N, S, R] R negatives per positive
    support_mask: torch.Tensor       # [N, S] bool
    query_users: torch.Tensor | None = None      # [N, Q]
    query_items: torch.Tensor | None = None      # [N, Q] positives
    query_negatives: torch.Tensor | None = None  # [N, Q] one negative each
    query_mask: torch.Tensor | None = None       # [N, Q] bool

    def to(self, device):
        return type(self)(**{f.name: None if getattr(self, f.name) is None
                             else getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.support_users.shape[0]


@dataclass
class ScenarioEvalBatch(ScenarioBatch):
    """N held-out scenarios: support pairs plus the evaluated users and the candidates."""

    users: torch.Tensor | None = None           # [N, U] evaluated users
    user_mask: torch.Tensor | None = None       # [N, U] bool
    candidates: torch.Tensor | None = None      # [N, C] the scenario's candidate items
    candidate_mask: torch.Tensor | None = None  # [N, C] bool
    relevant: torch.Tensor | None = None        # [N, U, C] bool: the user's pairs in the scenario


# ---------------------------------------------------------------------- scenarios
def _padded(values: np.ndarray, groups: np.ndarray, n_groups: int, fill=PAD) -> torch.Tensor:
    """Rows of ``values`` grouped by ``groups`` (0..n_groups-1, sorted) into ``[n_groups, max]``."""
    counts = np.bincount(groups, minlength=n_groups)
    position = np.arange(len(groups)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((n_groups, max(int(counts.max(initial=0)), 1)), fill, dtype=values.dtype)
    out[groups, position] = values
    return torch.from_numpy(out)


@dataclass
class ScenarioSet:
    """Scenarios as flat tables: ``pairs`` (columns scenario, user, item; unique, sorted by
    scenario) and ``candidates`` (columns scenario, item). Scenario ``s`` is named ``names[s]``."""

    name: str
    names: list[str]
    pairs: pd.DataFrame
    candidates: pd.DataFrame
    n_users: int
    n_items: int

    def __post_init__(self):
        s = self.pairs["scenario"].to_numpy()
        self.pair_offsets = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=len(self)))])
        c = self.candidates["scenario"].to_numpy()
        self.candidate_offsets = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=len(self)))])
        self.pair_users = torch.tensor(self.pairs["user"].to_numpy(), dtype=torch.long)
        self.pair_items = torch.tensor(self.pairs["item"].to_numpy(), dtype=torch.long)
        self.candidate_items = torch.tensor(self.candidates["item"].to_numpy(), dtype=torch.long)
        self.known = torch.from_numpy(self.pair_keys())  # every (user, item) positive, as keys

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        users = self.pairs.groupby("scenario")["user"].nunique()
        counts = np.diff(self.candidate_offsets)
        return (f"ScenarioSet({self.name!r}: {len(self)} scenarios, {len(self.pairs):,} pairs; "
                f"users per scenario {int(users.min())}-{int(users.max())} (median "
                f"{int(users.median())}); candidates {counts.min()}-{counts.max()})")

    @classmethod
    def from_tables(cls, pairs: pd.DataFrame, candidates: pd.DataFrame, names: list[str],
                    n_users: int, n_items: int, min_users: int, support: int,
                    name: str = "scenarios") -> "ScenarioSet":
        """Check and index the tables; errors name the scenario and what was expected."""
        n = len(names)
        n_candidates = np.bincount(candidates["scenario"].to_numpy(), minlength=n)
        users_per = pairs.groupby("scenario")["user"].nunique().reindex(range(n), fill_value=0)
        pair_keys = pairs["scenario"].to_numpy() * (n_items + 1) + pairs["item"].to_numpy()
        outside = ~np.isin(pair_keys, candidates["scenario"].to_numpy() * (n_items + 1)
                           + candidates["item"].to_numpy())
        for s, scenario in enumerate(names):
            if n_candidates[s] == 0:
                raise DataError(name, f"scenario {scenario!r}", "a non-empty candidate set; "
                                "it has no candidate items")
            if users_per.iloc[s] < min_users:
                raise DataError(name, f"scenario {scenario!r}", f"at least {min_users} users "
                                f"(half of them give the support pairs, up to {support}, the "
                                f"other half are evaluated); it has {users_per.iloc[s]}")
        if outside.any():
            row = pairs.iloc[int(np.flatnonzero(outside)[0])]
            raise DataError(name, f"scenario {names[int(row['scenario'])]!r}", "every "
                            f"interaction's item among the scenario's candidates; item "
                            f"{int(row['item'])} is not")
        pairs = (pairs[["scenario", "user", "item"]].drop_duplicates()
                 .sort_values(["scenario", "user", "item"]).reset_index(drop=True))
        candidates = (candidates[["scenario", "item"]].drop_duplicates()
                      .sort_values(["scenario", "item"]).reset_index(drop=True))
        return cls(name, list(names), pairs, candidates, n_users, n_items)

    def subset(self, scenarios, name: str, drop_pairs: np.ndarray | None = None) -> "ScenarioSet":
        """The scenarios ``scenarios`` (renumbered), minus the (user, item) keys ``drop_pairs``."""
        scenarios = np.asarray(scenarios)
        renumber = np.full(len(self), -1)
        renumber[scenarios] = np.arange(len(scenarios))
        pairs = self.pairs[renumber[self.pairs["scenario"].to_numpy()] >= 0].copy()
        if drop_pairs is not None:
            keys = pairs["user"].to_numpy() * (self.n_items + 1) + pairs["item"].to_numpy()
            pairs = pairs[~np.isin(keys, drop_pairs)]
        candidates = self.candidates[renumber[self.candidates["scenario"].to_numpy()] >= 0].copy()
        pairs["scenario"] = renumber[pairs["scenario"].to_numpy()]
        candidates["scenario"] = renumber[candidates["scenario"].to_numpy()]
        return ScenarioSet(name, [self.names[s] for s in scenarios],
                           pairs.sort_values(["scenario", "user", "item"]).reset_index(drop=True),
                           candidates.reset_index(drop=True), self.n_users, self.n_items)

    def pair_keys(self) -> np.ndarray:
        return np.unique(self.pairs["user"].to_numpy() * (self.n_items + 1)
                         + self.pairs["item"].to_numpy())

    # ------------------------------------------------------------------ negatives
    def negatives(self, scenarios: torch.Tensor, users: torch.Tensor, n: int,
                  generator: torch.Generator, rounds: int = 5) -> torch.Tensor:
        """``n`` candidates of the scenario per (scenario, user) position: ``users [N, P]`` ->
        ``[N, P, n]``, redrawn (up to ``rounds`` times, all at once) where the user has the item."""
        start = torch.from_numpy(self.candidate_offsets[:-1])[scenarios].view(-1, 1, 1)
        count = torch.from_numpy(np.diff(self.candidate_offsets))[scenarios].view(-1, 1, 1)
        items = self.candidate_items
        shape = (*users.shape, n)

        def draw():
            return items[start + (torch.rand(shape, generator=generator) * count).long()]

        negatives = draw()
        for _ in range(rounds):
            keys = users.unsqueeze(-1) * (self.n_items + 1) + negatives
            position = torch.searchsorted(self.known, keys).clamp(max=len(self.known) - 1)
            clash = self.known[position] == keys
            if not clash.any():
                break
            negatives = torch.where(clash, draw(), negatives)
        return negatives

    # ------------------------------------------------------------------ training tasks
    def sample(self, n_scenarios: int, support: int, query: int, n_negatives: int,
               generator: torch.Generator) -> ScenarioBatch:
        """A batch of training tasks from ``n_scenarios`` scenarios drawn uniformly with
        replacement. Each scenario's pairs are shuffled (one sort of random keys for the whole
        batch); the first ``min(support, n // 2)`` are the support, the next ``min(query, rest)``
        the query."""
        chosen = torch.randint(len(self), (n_scenarios,), generator=generator)
        offsets = torch.from_numpy(self.pair_offsets)
        counts = (offsets[1:] - offsets[:-1])[chosen]
        group = torch.repeat_interleave(torch.arange(n_scenarios), counts)
        starts = torch.repeat_interleave(offsets[:-1][chosen], counts)
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rows = starts + torch.arange(len(group)) - first
        order = torch.argsort(group.double() + torch.rand(len(group), generator=generator,
                                                          dtype=torch.float64))
        rows, group = rows[order], group[order]
        position = torch.arange(len(group)) - first
        n_support = torch.minimum(torch.full_like(counts, support), counts // 2)
        n_query = torch.minimum(torch.full_like(counts, query), counts - n_support)
        users, items = self.pair_users[rows], self.pair_items[rows]

        def part(keep, shift, width):
            out_users = torch.zeros(n_scenarios, width, dtype=torch.long)
            out_items = torch.zeros(n_scenarios, width, dtype=torch.long)
            out_users[group[keep], position[keep] - shift[keep]] = users[keep]
            out_items[group[keep], position[keep] - shift[keep]] = items[keep]
            return out_users, out_items, out_items != PAD

        in_support = position < n_support[group]
        in_query = ~in_support & (position < (n_support + n_query)[group])
        s_users, s_items, s_mask = part(in_support, torch.zeros_like(group), support)
        q_users, q_items, q_mask = part(in_query, n_support[group], query)
        s_negatives = self.negatives(chosen, s_users, n_negatives, generator) * s_mask.unsqueeze(-1)
        q_negatives = self.negatives(chosen, q_users, 1, generator)[..., 0] * q_mask
        return ScenarioBatch(s_users, s_items, s_negatives, s_mask, q_users, q_items,
                             q_negatives, q_mask)

    # ------------------------------------------------------------------ held-out scenarios
    def eval_set(self, max_support: int, n_negatives: int, seed: int = 0) -> "ScenarioEvalSet":
        """Fixed (seeded) support / evaluated users for every scenario: see the module doc."""
        rng = np.random.default_rng(seed)
        pairs = self.pairs
        user_key = pd.Series(rng.random(len(pairs)), index=pairs.index)
        # one random number per (scenario, user): the user's rank decides support vs evaluated
        per_user = pairs[["scenario", "user"]].drop_duplicates().copy()
        per_user["key"] = rng.random(len(per_user))
        per_user["rank"] = per_user.groupby("scenario")["key"].rank(method="first")
        per_user["n"] = per_user.groupby("scenario")["user"].transform("size")
        per_user["support"] = per_user["rank"] <= np.ceil(per_user["n"] / 2)
        merged = pairs.merge(per_user[["scenario", "user", "support"]], on=["scenario", "user"])
        merged["key"] = user_key.to_numpy()
        support = merged[merged["support"]].sort_values(["scenario", "key"])
        support = support[support.groupby("scenario").cumcount() < max_support]
        evaluated = merged[~merged["support"]]
        n = len(self)
        s = support["scenario"].to_numpy()
        s_users = _padded(support["user"].to_numpy(), s, n)
        s_items = _padded(support["item"].to_numpy(), s, n)
        s_mask = s_items != PAD
        generator = torch.Generator().manual_seed(seed)
        s_negatives = self.negatives(torch.arange(n), s_users, n_negatives, generator) * \
            s_mask.unsqueeze(-1)
        users = evaluated[["scenario", "user"]].drop_duplicates()
        e_users = _padded(users["user"].to_numpy(), users["scenario"].to_numpy(), n, fill=-1)
        candidates = _padded(self.candidates["item"].to_numpy(),
                             self.candidates["scenario"].to_numpy(), n)
        return ScenarioEvalSet(f"{self.name}: half of each scenario's users give <= {max_support} "
                               "support pairs, the other half rank all candidates",
                               self.names, s_users, s_items, s_negatives, s_mask, e_users,
                               candidates, evaluated[["scenario", "user", "item"]]
                               .reset_index(drop=True))


@dataclass
class ScenarioEvalSet:
    """Held-out scenarios with their fixed support and evaluated users, batched by `batches`."""

    name: str
    names: list[str]
    support_users: torch.Tensor      # [n_scenarios, S]
    support_items: torch.Tensor
    support_negatives: torch.Tensor  # [n_scenarios, S, R]
    support_mask: torch.Tensor
    users: torch.Tensor              # [n_scenarios, U], -1 = padding
    candidates: torch.Tensor         # [n_scenarios, C], PAD = padding
    targets: pd.DataFrame            # scenario, user, item of the evaluated users

    def __len__(self) -> int:
        return len(self.names)

    def __post_init__(self):
        """Where every target sits in its scenario's padded rows: users and candidates."""
        self.target_scenarios = torch.tensor(self.targets["scenario"].to_numpy(), dtype=torch.long)
        self.target_positions = tuple(
            _position(table, valid, self.target_scenarios,
                      torch.tensor(self.targets[column].to_numpy(), dtype=torch.long))
            for table, valid, column in ((self.users, self.users >= 0, "user"),
                                         (self.candidates, self.candidates != PAD, "item")))

    @property
    def n_users(self) -> int:
        return int((self.users >= 0).sum())

    def batch(self, scenarios: torch.Tensor, support_limit: int | None = None) -> ScenarioEvalBatch:
        """Scenarios ``scenarios`` with at most ``support_limit`` support pairs each (the first
        of the fixed random order, so a smaller support is a subset of a larger one)."""
        mask = self.support_mask[scenarios]
        if support_limit is not None:
            mask = mask & (torch.cumsum(mask.long(), 1) <= support_limit)
        width = max(int(mask.sum(1).max()), 1)
        users, candidates = self.users[scenarios], self.candidates[scenarios]
        users = users[:, :max(int((users >= 0).sum(1).max()), 1)]
        candidates = candidates[:, :max(int((candidates != PAD).sum(1).max()), 1)]
        relevant = torch.zeros(*users.shape, candidates.shape[1], dtype=torch.bool)
        where = torch.full((len(self),), -1)
        where[scenarios] = torch.arange(len(scenarios))
        row = where[self.target_scenarios]
        chosen = row >= 0
        user_pos, item_pos = self.target_positions
        relevant[row[chosen], user_pos[chosen], item_pos[chosen]] = True
        keep = lambda t: t[scenarios][:, :width]  # noqa: E731
        return ScenarioEvalBatch(keep(self.support_users), keep(self.support_items) * mask[:, :width],
                                 keep(self.support_negatives) * mask[:, :width, None],
                                 mask[:, :width], users=users.clamp(min=0), user_mask=users >= 0,
                                 candidates=candidates, candidate_mask=candidates != PAD,
                                 relevant=relevant)

    def batches(self, n_scenarios: int, support_limit: int | None = None):
        for scenarios in torch.arange(len(self)).split(n_scenarios):
            yield self.batch(scenarios, support_limit)

    def buckets(self, n_scenarios: int, max_padding: float = 1.1,
                small: int = 1 << 13) -> list[torch.Tensor]:
        """Scenario indices in groups of up to ``n_scenarios`` of similar size, to batch with
        little padding: scenarios in decreasing size (evaluated users x candidates); a group
        takes the next one while its padded grid (group size x most users x most candidates)
        stays within ``max_padding`` times the grids it holds, or within ``small`` pairs
        (where a call's fixed cost outweighs padding). Big scenarios go alone: batching them
        saves no work, padding adds some."""
        users, candidates = (self.users >= 0).sum(1), (self.candidates != PAD).sum(1)
        order = torch.argsort(users * candidates, descending=True, stable=True).tolist()
        groups, group, real, most_users, most_candidates = [], [], 0, 0, 0
        for s in order:
            u, c = int(users[s]), int(candidates[s])
            widest = (max(most_users, u), max(most_candidates, c))  # the group's grid with s
            grown = real + u * c
            if group and (len(group) == n_scenarios or (len(group) + 1) * widest[0] * widest[1]
                          > max(max_padding * grown, small)):
                groups.append(torch.tensor(group))
                group, widest, grown = [], (u, c), u * c
            group, real, (most_users, most_candidates) = group + [s], grown, widest
        return groups + [torch.tensor(group)]


def _position(table: torch.Tensor, valid: torch.Tensor, rows: torch.Tensor,
              values: torch.Tensor) -> torch.Tensor:
    """Column of ``values[j]`` in row ``rows[j]`` of the padded ``table`` (present there by
    construction), by one sort of (row, value) keys."""
    at_row, at_column = valid.nonzero(as_tuple=True)
    width = max(int(table.max()), int(values.max()) if len(values) else 0) + 1
    keys = at_row * width + table[at_row, at_column]
    order = torch.argsort(keys)
    return at_column[order][torch.searchsorted(keys[order], rows * width + values)]


# ---------------------------------------------------------------------- building scenarios
def item_genres(data: Interactions) -> tuple[list[str], np.ndarray]:
    """Genre names and a boolean ``[n_items + 1, G]`` matrix from ``data.item_features``: either
    one 0/1 column per genre, or a column ``genres`` of tuples of names."""
    features = data.item_features
    if features is None:
        raise DataError(data.name, "item_features", "item side information with genres (for "
                        "MovieLens, u.item or ml-100k.item beside u.data)")
    if "genres" in features.columns:
        lists = features["genres"].apply(lambda g: tuple(g) if isinstance(g, (tuple, list))
                                         else ()).to_numpy()
        names = sorted({g for genres in lists for g in genres})
        matrix = np.array([[g in genres for g in names] for genres in lists], dtype=bool)
    else:
        names = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])
                 and set(pd.unique(features[c].dropna())) <= {0, 1}]
        if not names:
            raise DataError(data.name, "item_features", "0/1 genre columns or a 'genres' column; "
                            f"found {list(features.columns)}")
        matrix = features[names].fillna(0).to_numpy().astype(bool)
    matrix = matrix.reshape(len(features), len(names))
    return names, np.vstack([np.zeros((1, len(names)), dtype=bool), matrix])


def genre_time_scenarios(data: Interactions, n_slices: int = 4, min_users: int = 20,
                         min_candidates: int = 10, max_support: int = 512) -> ScenarioSet:
    """MovieLens scenarios: (genre, time slice) with the slice's interactions of films of that
    genre. Slices have equal numbers of interactions (by timestamp). Candidates: the genre's films
    rated in the slice. Scenarios with fewer than ``min_users`` users or ``min_candidates``
    candidates are left out (so the checks of `ScenarioSet.from_tables` pass); an empty time
    slice, items without genres or no scenario left are errors that name the field."""
    names, genres = item_genres(data)
    no_genre = int((~genres[1:].any(1)).sum())
    if no_genre > data.n_items / 2:
        raise DataError(data.name, "item_features", f"genres for the rated items, under the "
                        f"ratings' item ids; {no_genre:,} of {data.n_items:,} items have none "
                        "(do the item table's ids match those of the ratings?)")
    frame = data.frame
    timestamps = frame["timestamp"].to_numpy()
    edges = np.quantile(timestamps, np.linspace(0, 1, n_slices + 1)[1:-1])
    slice_of = np.searchsorted(edges, timestamps, side="right")
    empty = int((np.bincount(slice_of, minlength=n_slices) == 0).sum())
    if empty:
        raise DataError(data.name, "timestamp", f"timestamps that split the interactions into "
                        f"n_slices={n_slices} time slices of equal size; {empty} slices are empty "
                        f"(only {len(np.unique(timestamps)):,} distinct timestamps): give real "
                        "timestamps or fewer slices")
    item_genre = genres[frame["item"].to_numpy()]                     # [rows, G]
    rows, genre = np.nonzero(item_genre)
    table = pd.DataFrame({"key": genre * n_slices + slice_of[rows],
                          "user": frame["user"].to_numpy()[rows],
                          "item": frame["item"].to_numpy()[rows]}).drop_duplicates()
    users = table.groupby("key")["user"].nunique()
    items = table.groupby("key")["item"].nunique()
    keep = users.index[(users >= min_users).to_numpy() & (items >= min_candidates).to_numpy()]
    if len(keep) == 0:
        raise DataError(data.name, "scenarios", f"a (genre, time slice) with at least "
                        f"min_users={min_users} users and min_candidates={min_candidates} films; "
                        f"none of the {len(names) * n_slices} has")
    table = table[table["key"].isin(keep)]
    renumber = {key: s for s, key in enumerate(keep)}
    table["scenario"] = table["key"].map(renumber)
    scenario_names = [f"{names[key // n_slices]} @ slice {key % n_slices + 1}/{n_slices}"
                      for key in keep]
    candidates = table[["scenario", "item"]].drop_duplicates()
    return ScenarioSet.from_tables(table, candidates, scenario_names, data.n_users, data.n_items,
                                   min_users, max_support, name=f"{data.name} genre x time")


def defined_scenarios(data: Interactions, definitions: dict[str, list], column: str = "scenario",
                      min_users: int = 4, max_support: int = 512) -> ScenarioSet:
    """Scenarios given explicitly: ``definitions`` maps a scenario name to its candidate items
    (*raw* ids); the rows of ``data.frame`` whose ``column`` is that name are its pairs."""
    if column not in data.frame.columns:
        raise DataError(data.name, column, "a column naming each interaction's scenario")
    known = set(data.raw_items[1:].tolist())
    candidates = []
    for s, (scenario, raw_items) in enumerate(definitions.items()):
        unknown = [item for item in raw_items if item not in known]
        if unknown:
            raise DataError(data.name, f"scenario {scenario!r}", "candidate items that exist in "
                            f"the data; unknown raw item ids {unknown[:5]}"
                            f"{' ...' if len(unknown) > 5 else ''}")
        items = data.to_internal_items(raw_items) if len(raw_items) else np.zeros(0, np.int64)
        candidates.append(pd.DataFrame({"scenario": s, "item": items}))
    index = {scenario: s for s, scenario in enumerate(definitions)}
    scenario_of = data.frame[column].map(index)
    rows = data.frame[scenario_of.notna().to_numpy()]
    pairs = pd.DataFrame({"scenario": scenario_of.dropna().astype(np.int64).to_numpy(),
                          "user": rows["user"].to_numpy(), "item": rows["item"].to_numpy()})
    return ScenarioSet.from_tables(pairs, pd.concat(candidates), list(definitions),
                                   data.n_users, data.n_items, min_users, max_support,
                                   name=f"{data.name} scenarios")


# ---------------------------------------------------------------------- split and embeddings
@dataclass
class ScenarioSplit:
    train: ScenarioSet
    valid: ScenarioSet
    test: ScenarioSet

    def __repr__(self) -> str:
        return (f"ScenarioSplit({len(self.train)} training / {len(self.valid)} validation / "
                f"{len(self.test)} test scenarios; {len(self.train.pairs):,} training pairs)")


def split_scenarios(scenarios: ScenarioSet, valid_fraction: float = 0.2,
                    test_fraction: float = 0.2, seed: int = 0) -> ScenarioSplit:
    """Disjoint training / validation / test scenarios (seeded). Pairs that belong to a
    validation or test scenario are removed from the training scenarios."""
    n = len(scenarios)
    n_valid, n_test = round(valid_fraction * n), round(test_fraction * n)
    if min(n_valid, n_test, n - n_valid - n_test) < 1:
        raise DataError(scenarios.name, "scenarios", f"enough scenarios for training, validation "
                        f"and test ({valid_fraction:.0%} / {test_fraction:.0%} held out); "
                        f"found {n}")
    order = np.random.default_rng(seed).permutation(n)
    valid = scenarios.subset(np.sort(order[:n_valid]), "valid")
    test = scenarios.subset(np.sort(order[n_valid:n_valid + n_test]), "test")
    held_out = np.union1d(valid.pair_keys(), test.pair_keys())
    train = scenarios.subset(np.sort(order[n_valid + n_test:]), "train", drop_pairs=held_out)
    return ScenarioSplit(train, valid, test)


@dataclass
class PretrainedEmbeddings:
    users: torch.Tensor  # [n_users, d]
    items: torch.Tensor  # [n_items + 1, d], row PAD = 0


def pretrain_embeddings(train: ScenarioSet, dim: int = 32, epochs: int = 20,
                        generator: torch.Generator | None = None) -> PretrainedEmbeddings:
    """BPR matrix factorisation on the training scenarios' pairs; both tables are scaled to unit
    root-mean-square entries (the scenario models' inputs) and frozen by the caller."""
    from ..models.bpr_mf import BPRMF, BPRMFConfig, pair_batches  # models import the data layer
    from ..training import fit

    pairs = train.pairs[["user", "item"]].drop_duplicates()
    model = BPRMF(train.n_users, train.n_items, BPRMFConfig(dim=dim))
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                 weight_decay=model.config.weight_decay)
    generator = generator or torch.Generator().manual_seed(0)
    fit(model, optimizer, lambda epoch: pair_batches(pairs, train.n_items, 1024, generator),
        max_epochs=epochs, progress=False, desc="BPR-MF")
    users, items = model.users.weight.detach().clone(), model.items.weight.detach().clone()
    items[PAD] = 0
    return PretrainedEmbeddings(users / users.pow(2).mean().sqrt(),
                                items / items[1:].pow(2).mean().sqrt())
