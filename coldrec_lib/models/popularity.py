"""Most-popular baseline: every user gets the items with the most training interactions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data.splits import EvalBatch
from .base import Recommender


class Popularity(Recommender):
    def __init__(self, train: pd.DataFrame, n_items: int):
        super().__init__()
        self.n_items = n_items
        counts = np.bincount(train["item"].to_numpy(), minlength=n_items + 1).astype(np.float32)
        self.register_buffer("counts", torch.from_numpy(counts))

    def score(self, batch: EvalBatch) -> torch.Tensor:
        return self.counts.expand(len(batch.users), -1)
