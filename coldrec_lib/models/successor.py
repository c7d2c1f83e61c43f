"""Most-frequent-successor baseline: every user gets the items that most often came right after
their last item in the training sequences (a first-order Markov chain by counting), ties and
unseen transitions ranked by popularity (`05_autoregressive_generation`, section "All
strategies and baselines"; `06_sequential_backbones`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data.interactions import sort_by_user_time
from ..data.splits import EvalBatch
from .base import Recommender


class MostFrequentSuccessor(Recommender):
    def __init__(self, train: pd.DataFrame, n_items: int):
        super().__init__()
        self.n_items = n_items
        frame = sort_by_user_time(train)
        users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
        same_user = users[1:] == users[:-1]
        pairs = np.stack([items[:-1][same_user], items[1:][same_user]], 1)
        transitions, counts = np.unique(pairs.reshape(-1, 2), axis=0, return_counts=True)
        # transitions sorted by previous item: item i's successors are entries offsets[i]:offsets[i+1]
        offsets = np.searchsorted(transitions[:, 0], np.arange(n_items + 2))
        popularity = np.bincount(items, minlength=n_items + 1).astype(np.float32)
        self.register_buffer("offsets", torch.from_numpy(offsets))
        self.register_buffer("successors", torch.from_numpy(transitions[:, 1].copy()))
        self.register_buffer("counts", torch.from_numpy(counts.astype(np.float32)))
        # below 1: popularity only orders items with the same successor count
        self.register_buffer("tie_break", torch.from_numpy(popularity / (popularity.max() + 1)))

    def successor_counts(self, last: torch.Tensor) -> torch.Tensor:
        """``[B, n_items + 1]``: how often each item followed ``last[b]`` in training (PAD: 0)."""
        start, lengths = self.offsets[last], self.offsets[last + 1] - self.offsets[last]
        rows = torch.repeat_interleave(torch.arange(len(last), device=last.device), lengths)
        begin = torch.cumsum(lengths, 0) - lengths
        entries = (torch.arange(int(lengths.sum()), device=last.device)
                   + (start - begin).repeat_interleave(lengths))
        counts = torch.zeros(len(last), self.n_items + 1, device=last.device)
        return counts.index_put_((rows, self.successors[entries]), self.counts[entries])

    def score(self, batch: EvalBatch) -> torch.Tensor:
        """Successor counts of the last history item (histories are left-padded), plus the
        popularity tie-break."""
        return self.successor_counts(batch.history[:, -1]) + self.tie_break
