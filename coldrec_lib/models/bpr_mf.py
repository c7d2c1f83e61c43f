"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained on pairwise rankings.

``score(u, i) = p_u . q_i + b_i`` and the BPR loss ``-log sigmoid(score(u, i+) - score(u, i-))``
(eq. 3 of the paper's BPR-Opt with L2 as weight decay). Taught in `00_foundations`, section
"A collaborative baseline". Users must be known at training time (no cold start).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data.splits import EvalBatch
from .base import Recommender


@dataclass
class BPRMFConfig:
    dim: int = 64
    lr: float = 5e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024


class BPRMF(Recommender):
    def __init__(self, n_users: int, n_items: int, config: BPRMFConfig = BPRMFConfig()):
        super().__init__()
        self.n_items, self.config = n_items, config
        self.users = nn.Embedding(n_users, config.dim)
        self.items = nn.Embedding(n_items + 1, config.dim)
        self.item_bias = nn.Embedding(n_items + 1, 1)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    def pair_score(self, users, items) -> torch.Tensor:
        return (self.users(users) * self.items(items)).sum(-1) + self.item_bias(items).squeeze(-1)

    def loss(self, batch) -> torch.Tensor:
        users, positives, negatives = batch
        return -F.logsigmoid(self.pair_score(users, positives)
                             - self.pair_score(users, negatives)).mean()

    def score(self, batch: EvalBatch) -> torch.Tensor:
        return self.users(batch.users) @ self.items.weight.T + self.item_bias.weight.T


def pair_batches(train: pd.DataFrame, n_items: int, batch_size: int,
                 generator: torch.Generator, device="cpu"):
    """One epoch of (user, positive, negative) batches in a fresh seeded order. Negatives are
    uniform over the catalogue (an occasional positive drawn as negative is the usual BPR
    approximation)."""
    users = torch.tensor(train["user"].to_numpy())
    items = torch.tensor(train["item"].to_numpy())
    order = torch.randperm(len(users), generator=generator)
    negatives = torch.randint(1, n_items + 1, (len(users),), generator=generator)
    for rows in order.split(batch_size):
        yield users[rows].to(device), items[rows].to(device), negatives[rows].to(device)
