"""NARM (Li et al., CIKM 2017): a GRU reads the sequence; the *global* encoder is its last state
``c_g = h_t`` and the *local* encoder attends over all its states,
``alpha_tj = v . sigmoid(A_1 h_t + A_2 h_j)``, ``c_l = sum_{j <= t} alpha_tj h_j`` (eq. 5-7 of
the paper, unnormalised weights as there). The session representation ``B [c_g; c_l]`` scores
item j by the bilinear ``e_j . B c_t`` (eq. 9), here with tied item embeddings. Taught in
`06_sequential_backbones`, section "Four backbones".

Every position t is encoded (attention over ``j <= t``, padding never attended), so each item of
a window is a training target, as for the other backbones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.interactions import PAD
from .sequential import SequentialBackbone, SequentialConfig, run_gru


@dataclass
class NARMConfig(SequentialConfig):
    n_layers: int = 1
    dropout: float = 0.25        # the paper: 0.25 on the embeddings, 0.5 before the output
    context_dropout: float = 0.5
    fused: bool = True      # False: the step-by-step GRU that vmap batches (MELO's MAML)


class NARM(SequentialBackbone):
    def __init__(self, n_items: int, config: NARMConfig = NARMConfig()):
        super().__init__(n_items, config)
        dim = config.dim
        self.gru = nn.GRU(dim, dim, config.n_layers, batch_first=True,
                          dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.a1 = nn.Linear(dim, dim, bias=False)
        self.a2 = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, 1, bias=False)
        self.b = nn.Linear(2 * dim, dim, bias=False)
        self.drop = nn.Dropout(config.dropout)
        self.context_drop = nn.Dropout(config.context_dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """``B [c_g; c_l]`` at every position ``[B, L, d]`` of left-padded ``items [B, L]``."""
        self.check_length(items)
        return self.session(items, items.shape[1])

    def next_item_hidden(self, history: torch.Tensor) -> torch.Tensor:
        """``B [c_g; c_l]`` at the last position only: the attention of one query, not of all
        L (the same state as ``encode(...)[:, -1]``)."""
        items = history[:, -self.config.max_len:]
        return self.session(items, 1)[:, -1]

    def session(self, items: torch.Tensor, n_queries: int) -> torch.Tensor:
        """``B [c_g; c_l]`` at the last ``n_queries`` positions ``[B, n_queries, d]``."""
        real = items != PAD
        states = run_gru(self.gru, self.drop(self.items(items)), real, self.config.fused)  # h_j
        queries = states[:, -n_queries:]                                                    # h_t
        # alpha[b, t, j] = v . sigmoid(A1 h_t + A2 h_j) for the pairs j <= t only (the lower
        # triangle: half the [B, L, L, d] work of the full square), then padded keys zeroed
        length = items.shape[1]
        t, j = torch.tril_indices(n_queries, length, length - n_queries, device=items.device)
        pairs = self.a1(queries).index_select(1, t) + self.a2(states).index_select(1, j)
        alpha = states.new_zeros(len(items), n_queries * length).index_copy(
            1, t * length + j, self.v(torch.sigmoid(pairs)).squeeze(-1))
        alpha = alpha.view(-1, n_queries, length) * real.unsqueeze(1)
        local = alpha @ states                                                # c_l  [B, q, d]
        context = self.context_drop(torch.cat([queries, local], -1))
        return self.b(context) * real[:, -n_queries:].unsqueeze(-1)
