"""EASE (Steck. *Embarrassingly Shallow Autoencoders for Sparse Data*, WWW 2019): an item-item
linear autoencoder in closed form, the trivial baseline beside Mult-VAE in `04_ract`, section
"Results".

With the training users' binary matrix ``X`` (users x items), EASE learns ``B`` minimising
``||X - X B||^2 + l2 * ||B||^2`` subject to ``diag(B) = 0`` (an item may not predict itself).
The solution (eq. 8 of the paper) is

    P = (X^T X + l2 * I)^{-1},    B = I - P * diagMat(1 / diag(P)),

that is ``B_ij = -P_ij / P_jj`` off the diagonal and ``B_jj = 0``. A user's scores are
``x_u B``: no training loop, and a held-out user is scored from their fold-in items alone.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..data.splits import EvalBatch
from .base import Recommender
from .multvae import UserRows, binary_rows


def ease_weights(gram: torch.Tensor, l2: float) -> torch.Tensor:
    """``B = I - P diagMat(1 / diag(P))`` with ``P = (gram + l2 I)^{-1}`` (``gram = X^T X``)."""
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0 (it makes X^T X + l2 I invertible); got {l2}")
    precision = torch.linalg.inv(gram + l2 * torch.eye(len(gram), dtype=gram.dtype,
                                                       device=gram.device))
    weights = -precision / precision.diagonal()[None, :]
    weights.fill_diagonal_(0.0)
    return weights


def item_gram(train: pd.DataFrame, n_items: int, chunk: int = 4096) -> torch.Tensor:
    """``X^T X`` in float64 (``[n_items, n_items]``: how many training users share each pair of
    items), accumulated over chunks of users so that ``X`` is never dense as a whole."""
    rows = UserRows(train, n_items)
    gram = torch.zeros(n_items, n_items, dtype=torch.float64)
    for users in torch.arange(len(rows)).split(chunk):
        x = rows.dense(users).double()
        gram += x.T @ x
    return gram


class EASE(Recommender):
    """The closed form for one ``l2`` from the training users' `item_gram`, solved in float64 and
    stored in float32 (so several ``l2`` reuse one ``X^T X``)."""

    def __init__(self, gram: torch.Tensor, l2: float = 500.0):
        super().__init__()
        if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"EASE expects the square item_gram X^T X; got {tuple(gram.shape)}")
        self.n_items, self.l2 = len(gram), l2
        self.register_buffer("weights", ease_weights(gram, l2).float())

    def score(self, batch: EvalBatch) -> torch.Tensor:
        scores = binary_rows(batch.history, self.n_items) @ self.weights
        return torch.cat([scores.new_full((len(scores), 1), float("-inf")), scores], 1)
