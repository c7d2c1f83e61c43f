"""Sliding windows over users' sequences: the training examples of the sequential backbones.

A user with ``n`` items gets windows of ``length`` consecutive items ending at ``n``,
``n - stride``, ``n - 2 stride``, ... Each window *owns* the last ``stride`` of its items (the
earliest window owns all of its items from ``first`` on), so every interaction at position
``>= first`` of its user's sequence is owned by exactly one window per epoch, and, with
``stride < length``, sees at least ``length - stride`` items of context before it. A next-item
model uses ``first=1`` (a user's first item has nothing before it to predict it from); the owned
positions are its targets. Taught in `06_sequential_backbones`, section "Every
item a target".

Windows are gathered in one indexing operation over the flat `Sequences` layout (no per-user
Python loop), left-padded with `PAD` like every model input in coldrec.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import DataError
from .interactions import PAD
from .sequences import Sequences


@dataclass
class Windows:
    users: torch.Tensor  # [W] whose sequence each window comes from
    index: torch.Tensor  # [W, length] positions in the flat `Sequences.items`; -1 = padding
    owned: torch.Tensor  # [W, length] True where this window owns (e.g. predicts) the item

    def __len__(self) -> int:
        return len(self.users)

    def take(self, values: torch.Tensor, fill=PAD) -> torch.Tensor:
        """``values`` (e.g. `Sequences.items` or `.ratings`) at the windows' positions, with
        ``fill`` at the padding: ``[W, length]``."""
        taken = values[self.index.clamp(min=0)]
        return taken.masked_fill(self.index < 0, fill)


def sliding_windows(sequences: Sequences, length: int, stride: int | None = None,
                    first: int = 0, users: torch.Tensor | None = None,
                    last_only: bool = False) -> Windows:
    """Windows of ``length`` items over the sequences of ``users`` (default: all), ``stride``
    apart (default ``length``: non-overlapping), latest first per user, users in order.

    ``last_only`` keeps only each user's most recent window, owning all of its items (the older
    items are then never seen). Users with at most ``first`` items get no window.
    """
    stride = length if stride is None else stride
    if length < 1 or not 1 <= stride <= length:
        raise ValueError(f"sliding_windows: need length >= 1 and 1 <= stride <= length; got "
                         f"length={length}, stride={stride}")
    candidates = torch.arange(sequences.n_users) if users is None else torch.as_tensor(users)
    n = sequences.lengths[candidates]
    eligible = n > first
    candidates, n = candidates[eligible], n[eligible]
    if len(candidates) == 0:
        raise DataError("sliding windows", "first", f"some user with more than first={first} "
                        "items; none has")
    per_user = torch.ones_like(n) if last_only else (n - first + stride - 1) // stride
    owner = torch.repeat_interleave(torch.arange(len(candidates)), per_user)
    # k = 0 for each user's latest window, 1 for the one before, ...
    k = torch.arange(len(owner)) - torch.repeat_interleave(per_user.cumsum(0) - per_user, per_user)
    end = n[owner] - k * stride                         # exclusive end, in the user's sequence
    position = end.unsqueeze(1) - length + torch.arange(length)   # [W, length]
    earliest = k == per_user[owner] - 1
    owned_from = torch.where(earliest, torch.full_like(end, 0 if last_only else first),
                             end - stride).unsqueeze(1)
    owned = (position >= owned_from) & (position >= 0)
    start = sequences.offsets[candidates[owner]].unsqueeze(1)
    index = torch.where(position >= 0, start + position, -1)
    return Windows(candidates[owner], index, owned)
