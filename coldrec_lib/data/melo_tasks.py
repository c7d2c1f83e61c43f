"""MELO's tasks on tensors: a user window -> support sub-windows and query suffixes.

A task is one user's window of at most ``max_len`` consecutive items (the most recent ones for
evaluation, a random contiguous window in training). Its last item is the **target**:

* **query**: up to ``n_query`` suffixes of the window, all ending at the target (random lengths
  ``>= min_window`` in training; the whole window for evaluation);
* **support**: up to ``n_support`` distinct contiguous sub-windows (length ``>= min_window``) of the
  window *minus* its target, drawn without replacement, so the target's rating is never seen.

Every row is left-padded with `PAD` to ``max_len``; ratings are 0 at padding; support rows come
longest first (so a model can skip most of the padding, `MAML`'s ``trim_padding``) and a slot
that is all padding is unused (a short window has fewer sub-windows than ``n_support``). All of it
is gathered with tensor indexing over the flat `Sequences` layout, with no per-user Python loop.
Taught in `02_melo`, section "Tasks".
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .errors import DataError
from .interactions import PAD, Interactions
from .sequences import Sequences

MIN_WINDOW = 2  # the shortest support sub-window or query suffix


@dataclass
class MeloTasks:
    users: torch.Tensor            # [T] whose window each task is
    support_items: torch.Tensor    # [T, S, L] left-padded with PAD
    support_ratings: torch.Tensor  # [T, S, L] 0 at padding
    query_items: torch.Tensor      # [T, Q, L] suffixes ending at the target (position L - 1)
    query_ratings: torch.Tensor    # [T, Q, L]

    def __len__(self) -> int:
        return len(self.users)

    @property
    def targets(self) -> torch.Tensor:
        """The rating to predict, one per task: ``[T]``."""
        return self.query_ratings[:, 0, -1]

    def rows(self, index) -> "MeloTasks":
        return MeloTasks(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device) -> "MeloTasks":
        return MeloTasks(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def check_ratings(sequences: Sequences, max_rating: int, source: str = "ratings") -> None:
    """MELO embeds ratings as integers ``1..max_rating`` (0 is padding): anything else is an
    error that names the offending value."""
    ratings = sequences.ratings
    bad = (ratings < 1) | (ratings > max_rating) | (ratings != ratings.round())
    if bad.any():
        raise DataError(source, "rating", f"integer ratings in 1..{max_rating}; found "
                        f"{float(ratings[bad][0])!r}")


def check_rating_data(data: Interactions, max_rating: int, min_ratings: int = MIN_WINDOW + 1,
                      setting: str = "max_rating") -> None:
    """Before any task is built: ``data`` holds explicit whole-number ratings on the scale
    ``1..max_rating`` (named ``setting``) reaching its top, and every user has at least
    ``min_ratings`` of them (a support sub-window plus the target). Errors name the file
    (``data.source``), the field and the raw id."""
    frame = data.frame
    ratings = frame["rating"].to_numpy()
    if ratings.min() == ratings.max():
        raise DataError(data.source, "rating", f"explicit ratings (MELO predicts them); every "
                        f"rating is {ratings[0]:g}: implicit feedback, or a rating column that "
                        "is absent or constant")
    bad = (ratings < 1) | (ratings > max_rating) | (ratings != np.round(ratings))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(data.source, "rating", f"whole-number ratings 1..{max_rating} ({setting}="
                        f"{max_rating}); user {data.raw_users[frame['user'].iat[row]]} has "
                        f"{ratings[row]:g} (another scale: set {setting}; half stars: map them "
                        "to whole numbers, e.g. rating * 2)")
    if ratings.max() != max_rating:
        raise DataError(data.source, "rating", f"ratings on the scale 1..{setting}={max_rating}; "
                        f"the highest is {ratings.max():g} (set {setting}={ratings.max():g})")
    counts = np.bincount(frame["user"].to_numpy(), minlength=data.n_users)
    if (counts < min_ratings).any():
        user = int(np.flatnonzero(counts < min_ratings)[0])
        raise DataError(data.source, "user", f"at least {min_ratings} ratings per user (a support "
                        f"sub-window plus the target); user {data.raw_users[user]} has "
                        f"{counts[user]}")


def user_windows(sequences: Sequences, users: torch.Tensor, max_len: int, random: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat positions of each user's window, right-aligned in ``max_len`` slots, -1 at padding:
    ``[T, max_len]``. The most recent ``min(len, max_len)`` items, or with ``random=True`` a
    uniformly drawn contiguous window of that length."""
    lengths = sequences.lengths[users]
    n = lengths.clamp(max=max_len)
    slack = lengths - n
    shift = (torch.rand(len(users), generator=generator) * (slack + 1)).long() if random else slack
    end = sequences.offsets[users] + shift + n  # one past the target
    slot = torch.arange(max_len)
    index = end.unsqueeze(1) - max_len + slot
    return torch.where(slot >= max_len - n.unsqueeze(1), index, -1)


def _sub_windows(max_context: int, min_window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (start, length) with ``length >= min_window`` and ``start + length <= max_context``."""
    pairs = [(a, n) for n in range(min_window, max_context + 1) for a in range(max_context - n + 1)]
    start, length = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).unbind(1)
    return start, length


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.where(index >= 0, values[index.clamp(min=0)], torch.zeros((), dtype=values.dtype))


def melo_tasks(sequences: Sequences, users, max_len: int = 30, n_support: int = 25,
               n_query: int = 3, min_window: int = MIN_WINDOW, max_rating: int = 5,
               train: bool = False, generator: torch.Generator | None = None) -> MeloTasks:
    """One task per user of ``users`` (see the module docstring). ``train=True`` draws a random
    window and ``n_query`` random query suffixes; otherwise the most recent window is the single
    query. Support sub-windows are drawn with ``generator`` either way."""
    users = torch.as_tensor(users, dtype=torch.long)
    if sequences.ratings is None:
        raise DataError("MELO tasks", "rating", "sequences with ratings")
    check_ratings(sequences, max_rating)
    if max_len < min_window + 1 or min_window < 1:
        raise ValueError(f"MELO tasks need 1 <= min_window < max_len; got min_window="
                         f"{min_window}, max_len={max_len}")
    lengths = sequences.lengths[users]
    short = lengths < min_window + 1
    if short.any():
        raise DataError("MELO tasks", "user", f"at least min_window + 1 = {min_window + 1} "
                        f"ratings per user (a support sub-window plus the target); user "
                        f"{int(users[short][0])} has {int(lengths[short][0])}")
    window = user_windows(sequences, users, max_len, train, generator)  # [T, L]
    n = lengths.clamp(max=max_len)
    end = window[:, -1] + 1
    slot = torch.arange(max_len)

    # support: sub-windows of the context (the window minus its target), without replacement
    start, length = _sub_windows(max_len - 1, min_window)
    fits = start + length <= (n - 1).unsqueeze(1)                      # [T, P]
    keys = torch.rand(fits.shape, generator=generator).masked_fill(~fits, float("inf"))
    keys, chosen = keys.topk(min(n_support, keys.shape[1]), dim=1, largest=False)
    used = keys.isfinite()                                             # [T, S]
    size = length[chosen].masked_fill(~used, 0)
    size, order = size.sort(dim=1, descending=True, stable=True)  # longest rows first
    chosen, used = chosen.gather(1, order), used.gather(1, order)
    first = (end - n).unsqueeze(1) + start[chosen]                     # flat index of row start
    index = first.unsqueeze(2) + slot - (max_len - size).unsqueeze(2)  # [T, S, L]
    index = torch.where((slot >= (max_len - size).unsqueeze(2)) & used.unsqueeze(2), index, -1)

    # query: suffixes ending at the target
    if train:
        draw = torch.rand(len(users), n_query, generator=generator)
        q_size = min_window + (draw * (n - min_window + 1).unsqueeze(1)).long()
    else:
        q_size = n.unsqueeze(1)
    q_index = end.reshape(-1, 1, 1) - max_len + slot
    q_index = torch.where(slot >= (max_len - q_size).unsqueeze(2), q_index, -1)

    return MeloTasks(users, _gather(sequences.items, index), _gather(sequences.ratings, index),
                     _gather(sequences.items, q_index), _gather(sequences.ratings, q_index))
