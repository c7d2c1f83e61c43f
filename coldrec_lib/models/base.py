"""The contract every coldrec model follows, so one `Evaluator` serves them all.

* ``loss(batch) -> scalar tensor``: the training objective on one training batch (its form is the
  model's own: pairs, sequences, tasks or user vectors);
* ``score(batch: EvalBatch) -> [B, n_items + 1]``: a score for every item of the catalogue (column
  0 is the padding item; the evaluator masks it and, under `FullRanking`, the history);
* ``score_candidates(batch, candidates [B, C]) -> [B, C]``: scores for given items only. The
  default gathers from ``score``; models that can do better (e.g. MetaTL) override it.
* ``min_history``: the history items the model needs to score a user (0: none, e.g. popularity;
  `recommend` refuses a shorter history with a clear error).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.splits import EvalBatch


class Recommender(nn.Module):
    min_history = 0

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def score(self, batch: EvalBatch) -> torch.Tensor:
        raise NotImplementedError

    def score_candidates(self, batch: EvalBatch, candidates: torch.Tensor) -> torch.Tensor:
        return self.score(batch).gather(1, candidates)
