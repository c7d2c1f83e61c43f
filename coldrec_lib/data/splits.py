"""Train / validation / test splits. Each keeps held-out interactions out of training (property
tests in ``tests/test_splits.py``) and returns `EvalSet`s that any model can be scored on.

(a) `cold_start_by_time`  new users arrive after a cut time (MetaTL); `cold_start_by_part`
                          for data whose authors ship the new users in a file of their own
(b) `heldout_users`       whole users held out, 80/20 fold-in (RaCT's strong generalisation)
(c) `last_n_horizon`      every user's last N items held out as a set (autoregressive paper)
(d) `leave_one_out`       last item test, second-to-last validation
(e) `random_ratio_split`  each user's items shuffled and cut 8:1:1 (RecBole's default split)

Every frame a split returns is sorted by user, then time (ties in file order), and every
sequence built from it holds that user's own items in that order (`Sequences.from_frame` sorts
itself; property tests over shuffled rows, string and two-digit ids, tied timestamps).

Full ranking masks the user's history, so a target that also sat in the history would always
count as a miss. `Interactions` drops duplicate (user, item) rows by default, so in these splits
a user's targets and history never share an item; with ``duplicates="keep"`` (repeat
consumption) they can, and full ranking then scores such targets as misses.

Taught in `00_foundations`, section "Splits".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import DataError
from .interactions import PAD, PART, Interactions, sort_by_user_time
from .sequences import Sequences


@dataclass
class EvalBatch:
    """What a model sees at evaluation: whose turn it is and what they did before."""

    users: torch.Tensor    # [B] internal user ids
    history: torch.Tensor  # [B, H] the model's input, chronological, left-padded with PAD
    targets: torch.Tensor  # [B, T] held-out items, right-padded with PAD
    history_ratings: torch.Tensor | None = None  # [B, H], aligned with history
    excluded: torch.Tensor | None = None  # [B, E] seen items the model does not read, PAD-padded

    def recent(self, n: int | None) -> "EvalBatch":
        """The same batch with only the ``n`` most recent history items (a model's context)."""
        if n is None or n >= self.history.shape[1]:
            return self
        ratings = None if self.history_ratings is None else self.history_ratings[:, -n:]
        return EvalBatch(self.users, self.history[:, -n:], self.targets, ratings, self.excluded)

    def to(self, device) -> "EvalBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return EvalBatch(move(self.users), move(self.history), move(self.targets),
                         move(self.history_ratings), move(self.excluded))


@dataclass
class EvalSet:
    """Users to evaluate, each with a history (input) and held-out targets, stored flat, and
    optionally other ``excluded`` items: seen items the model does not read but a protocol may
    keep out of the ranking (RecBole's test: the model reads the training items, the ranking
    excludes the validation items too)."""

    users: torch.Tensor     # [N]
    history: Sequences      # row n is user users[n]'s input
    targets: Sequences      # row n is user users[n]'s held-out items
    name: str = "eval"
    excluded: Sequences | None = None  # row n: user users[n]'s other seen items

    @classmethod
    def from_frames(cls, users, history: pd.DataFrame, targets: pd.DataFrame,
                    name: str, excluded: pd.DataFrame | None = None) -> "EvalSet":
        """``history`` / ``targets`` / ``excluded``: rows (user, item, rating, timestamp) in any
        order."""
        users = np.asarray(users, dtype=np.int64)
        rows = pd.Index(users)
        parts = []
        for frame in (history, targets) + (() if excluded is None else (excluded,)):
            row = rows.get_indexer(frame["user"].to_numpy())
            local = frame[row >= 0].assign(user=row[row >= 0])
            parts.append(Sequences.from_frame(local, len(users)))
        empty = (parts[1].lengths == 0).nonzero()
        if len(empty):
            raise DataError(name, "targets", f"at least one held-out item per user; user "
                            f"{users[int(empty[0])]} has none")
        return cls(torch.as_tensor(users), parts[0], parts[1], name,
                   parts[2] if excluded is not None else None)

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, rows: torch.Tensor) -> EvalBatch:
        """Padded tensors for rows ``rows`` (history left-padded, targets right-padded)."""
        h_len = max(1, int(self.history.lengths[rows].max()) if len(rows) else 0)
        t_len = max(1, int(self.targets.lengths[rows].max()))
        ratings = None
        if self.history.ratings is not None:
            ratings = self.history.last(rows, h_len, values=self.history.ratings)
        targets = self.targets.first(rows, t_len)
        excluded = None
        if self.excluded is not None:
            excluded = self.excluded.first(rows, max(1, int(self.excluded.lengths[rows].max())))
        return EvalBatch(self.users[rows], self.history.last(rows, h_len), targets, ratings,
                         excluded)


@dataclass
class Split:
    train: pd.DataFrame  # training interactions (internal ids of the parent `Interactions`)
    valid: EvalSet
    test: EvalSet
    n_users: int
    n_items: int
    description: str

    def __repr__(self) -> str:
        return (f"Split({self.description}: {len(self.train):,} training interactions, "
                f"{len(self.valid):,} validation users, {len(self.test):,} test users)")

    def train_sequences(self) -> Sequences:
        return Sequences.from_frame(self.train, self.n_users)


def _split_users(users: np.ndarray, fraction: float, seed: int, source: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded partition of ``users`` into (first ``fraction``, rest), each sorted and each with
    at least one user (validation and test both need someone to score)."""
    if len(users) < 2:
        raise DataError(source, "user", f"at least 2 eligible users, one for validation and one "
                        f"for test; found {len(users)}")
    order = np.random.default_rng(seed).permutation(users)
    n_first = min(max(int(round(fraction * len(users))), 1), len(users) - 1)
    return np.sort(order[:n_first]), np.sort(order[n_first:])


# ---------------------------------------------------------------------- (a) cold start by time
@dataclass
class ColdStartSplit:
    """Warm users (first interaction before ``cut_time``) train; new users are split seeded into
    validation and test. With ``truncate_warm=True`` warm users' interactions after the cut are
    dropped too, so training never sees the future."""

    train: pd.DataFrame
    new: pd.DataFrame
    valid_users: np.ndarray
    test_users: np.ndarray
    cut_time: float  # int for integer timestamps
    n_users: int
    n_items: int

    def __repr__(self) -> str:
        return (f"ColdStartSplit(cut at t={self.cut_time}: {self.train['user'].nunique():,} warm "
                f"users / {len(self.train):,} interactions; new users: {len(self.valid_users):,} "
                f"validation, {len(self.test_users):,} test)")

    def train_sequences(self) -> Sequences:
        return Sequences.from_frame(self.train, self.n_users)

    def new_sequences(self) -> Sequences:
        return Sequences.from_frame(self.new, self.n_users)

    def eval_set(self, part: str, k: int, n_targets: int = 1) -> EvalSet:
        """New users of ``part`` ('valid' or 'test') with more than ``k`` items: history = their
        first ``k`` items, targets = the ``n_targets`` items after them."""
        users = {"valid": self.valid_users, "test": self.test_users}[part]
        new = self.new[self.new["user"].isin(users)]
        position = new.groupby("user").cumcount().to_numpy()
        length = new.groupby("user")["item"].transform("size").to_numpy()
        eligible = length >= k + n_targets
        if not eligible.any():
            raise DataError(f"cold-start split ({part})", "k", f"K + n_targets <= the longest "
                            f"new-user history ({length.max(initial=0)} items); got K={k}, "
                            f"n_targets={n_targets}, so no user has enough items")
        history = new[eligible & (position < k)]
        targets = new[eligible & (position >= k) & (position < k + n_targets)]
        return EvalSet.from_frames(np.unique(history["user"]), history, targets,
                                   f"{part}: new users' first {k} items -> next {n_targets}")


def cold_start_by_time(data: Interactions, new_user_fraction: float = 0.2,
                       cut_time: int | None = None, valid_fraction: float = 0.3,
                       truncate_warm: bool = True, seed: int = 0) -> ColdStartSplit:
    """Users whose first interaction is at or after the cut are new (cold-start) users.

    The cut is ``cut_time`` or, by default, the time that makes ``new_user_fraction`` of the users
    new. New users are split into validation (``valid_fraction``) and test with ``seed``.
    """
    frame = data.frame
    first_seen = frame.groupby("user")["timestamp"].min()
    if cut_time is None:
        cut_time = np.quantile(first_seen.to_numpy(), 1 - new_user_fraction)
        cut_time = int(cut_time) if np.issubdtype(first_seen.dtype, np.integer) else float(cut_time)
    new_users = first_seen.index[first_seen.to_numpy() >= cut_time].to_numpy()
    if len(new_users) == 0 or len(new_users) == len(first_seen):
        raise DataError(data.name, "timestamp", f"some users to start before and some after the "
                        f"cut time {cut_time}; got {len(new_users)} new of {len(first_seen)}")
    is_new = frame["user"].isin(new_users).to_numpy()
    train = frame[~is_new]
    if truncate_warm:
        train = train[train["timestamp"].to_numpy() < cut_time]
    valid_users, test_users = _split_users(new_users, valid_fraction, seed,
                                           f"{data.name} (new users after t={cut_time})")
    return ColdStartSplit(train.reset_index(drop=True), frame[is_new].reset_index(drop=True),
                          valid_users, test_users, cut_time, data.n_users, data.n_items)


def cold_start_by_part(data: Interactions, new_part: str = "test_new_user",
                       valid_fraction: float = 0.3, seed: int = 0,
                       column: str = PART) -> ColdStartSplit:
    """Cold start as the data's authors split it (MetaTL's Electronics files): rows whose
    ``column`` is ``new_part`` are the new users, all other rows train. The files number their
    users independently, so a user is the pair (part, user id): users are renumbered in
    (part, raw id) order (numeric for numeric ids) and the rows re-sorted by (user, time, file
    order). New users are split into validation (``valid_fraction``) and test with ``seed``."""
    frame = data.frame
    if column not in frame.columns:
        raise DataError(data.name, column, "a column naming the part (file) of every row")
    is_new = (frame[column] == new_part).to_numpy()
    if is_new.all() or not is_new.any():
        raise DataError(data.name, column, f"rows of part {new_part!r} and rows of other parts; "
                        f"found parts {sorted(frame[column].unique())}")
    users = frame.groupby([column, "user"], sort=True).ngroup().to_numpy()
    frame = sort_by_user_time(frame.assign(user=users))
    is_new = (frame[column] == new_part).to_numpy()
    valid_users, test_users = _split_users(np.unique(frame["user"].to_numpy()[is_new]),
                                           valid_fraction, seed,
                                           f"{data.name} (users of part {new_part!r})")
    new = frame[is_new].reset_index(drop=True)
    return ColdStartSplit(frame[~is_new].reset_index(drop=True), new, valid_users, test_users,
                          new["timestamp"].min().item(), int(users.max()) + 1, data.n_items)


# ---------------------------------------------------------------------- (b) held-out users
def heldout_users(data: Interactions, n_valid: int | float = 0.1, n_test: int | float = 0.1,
                  fold_in: float = 0.8, seed: int = 0) -> Split:
    """Strong generalisation: validation and test users are absent from training. Each held-out
    user's items are split at random (seeded) into a fold-in part (``fold_in``, the model's input)
    and the rest (targets); both parts get at least one item, so users need >= 2 items."""
    frame = data.frame
    counts = frame.groupby("user").size()
    eligible = counts.index[counts.to_numpy() >= 2].to_numpy()
    sizes = [int(round(n * len(counts))) if isinstance(n, float) else int(n)
             for n in (n_valid, n_test)]
    if sum(sizes) >= len(eligible):
        raise DataError(data.name, "user", f"more users with >= 2 items than the {sum(sizes)} "
                        f"held out; found {len(eligible)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible)
    valid_users = np.sort(order[:sizes[0]])
    test_users = np.sort(order[sizes[0]:sizes[0] + sizes[1]])
    held = frame[frame["user"].isin(order[:sum(sizes)])].copy()
    held["_key"] = rng.random(len(held))
    position = held.groupby("user")["_key"].rank(method="first").to_numpy() - 1
    n_items = held.groupby("user")["item"].transform("size").to_numpy()
    n_input = np.clip(np.round(fold_in * n_items), 1, n_items - 1)
    held = held.drop(columns="_key")
    history, targets = held[position < n_input], held[position >= n_input]
    evals = [EvalSet.from_frames(users, history, targets,
                                 f"{part}: held-out users, {fold_in:.0%} fold-in -> rest")
             for part, users in (("valid", valid_users), ("test", test_users))]
    train = frame[~frame["user"].isin(order[:sum(sizes)])].reset_index(drop=True)
    return Split(train, *evals, data.n_users, data.n_items,
                 f"held-out users ({len(valid_users)} valid, {len(test_users)} test), "
                 f"{fold_in:.0%} fold-in")


# ---------------------------------------------------------------------- (c) last-N horizon
def last_n_horizon(data: Interactions, n: int = 10, valid_fraction: float = 0.5,
                   seed: int = 0) -> Split:
    """Each user's last ``n`` items (by time) are held out; everything earlier is training data
    for all users. Users with more than ``n`` items are split into validation and test."""
    frame = data.frame
    from_end = frame.groupby("user").cumcount(ascending=False).to_numpy()
    lengths = frame.groupby("user")["item"].transform("size").to_numpy()
    held = (from_end < n) & (lengths > n)
    users = np.unique(frame["user"].to_numpy()[held])
    if len(users) == 0:
        raise DataError(data.name, "n", f"some user with more than n={n} items; the longest "
                        f"history has {lengths.max()}")
    valid_users, test_users = _split_users(users, valid_fraction, seed,
                                           f"{data.name} (users with more than n={n} items)")
    train = frame[~held].reset_index(drop=True)
    evals = [EvalSet.from_frames(part_users, train, frame[held], f"{part}: history -> last {n}")
             for part, part_users in (("valid", valid_users), ("test", test_users))]
    return Split(train, *evals, data.n_users, data.n_items, f"last-{n} horizon")


# ---------------------------------------------------------------------- (d) leave one out
def leave_one_out(data: Interactions) -> Split:
    """Last item of each user with >= 3 items is the test target, the one before it the
    validation target; training keeps everything else."""
    frame = data.frame
    from_end = frame.groupby("user").cumcount(ascending=False).to_numpy()
    lengths = frame.groupby("user")["item"].transform("size").to_numpy()
    eligible = lengths >= 3
    users = np.unique(frame["user"].to_numpy()[eligible])
    if len(users) == 0:
        raise DataError(data.name, "user", "some user with at least 3 interactions")
    valid_row = eligible & (from_end == 1)
    test_row = eligible & (from_end == 0)
    train = frame[~(valid_row | test_row)].reset_index(drop=True)
    valid = EvalSet.from_frames(users, train, frame[valid_row], "valid: history -> next item")
    test = EvalSet.from_frames(users, frame[~test_row], frame[test_row],
                               "test: history (incl. the validation item) -> last item")
    return Split(train, valid, test, data.n_users, data.n_items, "leave-one-out")


# ---------------------------------------------------------------------- (e) random ratio split
def ratio_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Items per part ``[len(n), 3]`` for users with ``n`` items, RecBole's rounding
    (``_calcu_split_ids``): valid and test get ``floor(ratio * n)``, raised to 1 when that is
    0 < ratio * n < 1 while training keeps more than one item; training gets the rest."""
    counts = np.stack([np.zeros_like(n)] + [np.floor(r * n).astype(n.dtype)
                                            for r in ratios[1:]], 1)
    counts[:, 0] = n - counts[:, 1:].sum(1)
    for part in (2, 1):  # RecBole tops up the last part first
        raise_it = (counts[:, 0] > 1) & (ratios[part] * n > 0) & (ratios[part] * n < 1)
        counts[raise_it, part] += 1
        counts[raise_it, 0] -= 1
    return counts


def random_ratio_split(data: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Each user's interactions in a seeded random order, cut into train / valid / test by
    ``ratios`` (`ratio_counts`). Validation: the model reads the training items. Test (RecBole's
    protocol): the model reads the training items, the validation items are `EvalSet.excluded`.
    Users without a validation (test) item are not in the validation (test) set."""
    if len(ratios) != 3 or min(ratios) < 0 or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1; got {ratios}")
    frame = data.frame
    rng = np.random.default_rng(seed)
    key = pd.Series(rng.random(len(frame)), index=frame.index)
    position = key.groupby(frame["user"]).rank(method="first").to_numpy().astype(np.int64) - 1
    n = frame.groupby("user")["item"].transform("size").to_numpy()
    counts = ratio_counts(n, tuple(ratios))
    part = (position >= counts[:, 0]).astype(np.int64) + (position >= counts[:, :2].sum(1))
    train, valid, test = (frame[part == p] for p in range(3))
    if len(valid) == 0 or len(test) == 0:
        raise DataError(data.name, "user", f"users with enough items for a validation and a "
                        f"test item under ratios {ratios}; the longest history has {n.max()}")
    description = "random {:g}:{:g}:{:g} per user".format(*(10 * np.asarray(ratios)))
    evals = [EvalSet.from_frames(np.unique(valid["user"]), train, valid,
                                 "valid: training items -> random validation items"),
             EvalSet.from_frames(np.unique(test["user"]), train, test,
                                 "test: training items -> random test items (validation items "
                                 "excluded)", excluded=valid)]
    return Split(train.reset_index(drop=True), *evals, data.n_users, data.n_items, description)
