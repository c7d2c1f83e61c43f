"""Per-user item sequences stored flat (CSR layout) and the K-shot task builder.

Every user's items in time order are concatenated into one tensor ``items``; user ``u`` owns
``items[offsets[u]:offsets[u + 1]]``. Windows, prefixes and suffixes of many users are gathered in
one indexing operation, with no per-user Python loop and no dense ``users x longest`` matrix.
Taught in `00_foundations` (section "Sequences and K-shot tasks") and used by MetaTL, MELO and
the generation notebook.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import DataError
from .interactions import PAD, sort_by_user_time


@dataclass
class Sequences:
    items: torch.Tensor    # [n_interactions] item ids, users' sequences one after another
    offsets: torch.Tensor  # [n_users + 1]
    ratings: torch.Tensor | None = None  # [n_interactions], aligned with items

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int) -> "Sequences":
        """Each user's items of ``frame`` (columns ``user``, ``item``, ``rating`` and optionally
        ``timestamp``) in time order, ties in row order. The rows are sorted here (a no-op
        when they already are), so rows in any order give every user their own items: the
        invariant does not depend on the caller."""
        users = frame["user"].to_numpy()
        if len(users) and (users.min() < 0 or users.max() >= n_users):
            raise DataError("sequences", "user", f"user ids in 0..{n_users - 1}; found "
                            f"{users.min()}..{users.max()}")
        frame = sort_by_user_time(frame)
        counts = np.bincount(frame["user"].to_numpy(), minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls(torch.tensor(frame["item"].to_numpy(), dtype=torch.long),
                   torch.tensor(offsets, dtype=torch.long),
                   torch.tensor(frame["rating"].to_numpy(), dtype=torch.float32))

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def window(self, users: torch.Tensor, starts: torch.Tensor, length: int,
               values: torch.Tensor | None = None) -> torch.Tensor:
        """Contiguous windows ``seq[u][start : start + length]`` for many users: ``[N, length]``.
        The caller guarantees ``start + length <= len(seq[u])``."""
        index = self.offsets[users].unsqueeze(1) + starts.unsqueeze(1) + torch.arange(length)
        return (self.items if values is None else values)[index]

    def last(self, users: torch.Tensor, length: int, skip_last: int = 0,
             values: torch.Tensor | None = None) -> torch.Tensor:
        """The ``length`` most recent items before the final ``skip_last`` ones, left-padded
        with `PAD` (0): the usual input of a sequential model. ``[N, length]``."""
        ends = self.offsets[users + 1] - skip_last
        index = ends.unsqueeze(1) - length + torch.arange(length)
        valid = index >= self.offsets[users].unsqueeze(1)
        source = self.items if values is None else values
        return torch.where(valid, source[index.clamp(min=0)], torch.zeros((), dtype=source.dtype))

    def first(self, users: torch.Tensor, length: int) -> torch.Tensor:
        """The ``length`` oldest items, right-padded with `PAD`. ``[N, length]``."""
        index = self.offsets[users].unsqueeze(1) + torch.arange(length)
        valid = index < self.offsets[users + 1].unsqueeze(1)
        return torch.where(valid, self.items[index.clamp(max=len(self.items) - 1)], PAD)


@dataclass
class Tasks:
    """A batch of K-shot tasks: ``support`` are the first K items of a contiguous window, ``query``
    the items that follow. ``users`` says whose sequence each task came from."""

    users: torch.Tensor    # [N]
    support: torch.Tensor  # [N, K]
    query: torch.Tensor    # [N, n_query]


class TaskSampler:
    """Draws K-shot tasks as contiguous windows of ``K + n_query`` items, all in tensor ops.

    Users shorter than ``K + n_query`` are never drawn. ``per="user"`` draws users uniformly
    (each user is one task, as in MetaTL); ``per="window"`` draws every window equally often.
    """

    def __init__(self, sequences: Sequences, k: int, n_query: int = 1,
                 users: torch.Tensor | None = None, per: str = "user"):
        if k < 1 or n_query < 1:
            raise ValueError(f"k and n_query must be >= 1; got k={k}, n_query={n_query}")
        self.sequences, self.k, self.n_query = sequences, k, n_query
        candidates = torch.arange(sequences.n_users) if users is None else torch.as_tensor(users)
        lengths = sequences.lengths[candidates]
        self.users = candidates[lengths >= k + n_query]
        if len(self.users) == 0:
            raise DataError("task sampler", "k", f"K + n_query <= the longest history "
                            f"({int(lengths.max()) if len(lengths) else 0} items); "
                            f"got K={k}, n_query={n_query}, so no user has enough items")
        n_windows = (sequences.lengths[self.users] - (k + n_query) + 1).float()
        self.weights = n_windows if per == "window" else torch.ones_like(n_windows)

    def sample(self, n_tasks: int, generator: torch.Generator | None = None) -> Tasks:
        picks = torch.multinomial(self.weights, n_tasks, replacement=True, generator=generator)
        users = self.users[picks]
        span = self.sequences.lengths[users] - (self.k + self.n_query) + 1
        starts = (torch.rand(n_tasks, generator=generator) * span).long()
        window = self.sequences.window(users, starts, self.k + self.n_query)
        return Tasks(users, window[:, :self.k], window[:, self.k:])

    def first_tasks(self) -> Tasks:
        """The evaluation task of each eligible user: their first K items and the next ones."""
        window = self.sequences.window(self.users, torch.zeros_like(self.users),
                                       self.k + self.n_query)
        return Tasks(self.users, window[:, :self.k], window[:, self.k:])
