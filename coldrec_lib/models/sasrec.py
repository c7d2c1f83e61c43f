"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence,
trained by default with full-softmax cross-entropy over the catalogue ("SASRec+", as in
Klenitskiy & Vasilev, RecSys 2023); ``loss="bce"`` gives the original one-negative binary loss.

``h_t = Transformer(e_{i_1} + p_1, ..., e_{i_t} + p_t)`` with causal attention (eq. 1-6 of the
paper), and the next-item scores ``h_t . e_j`` for every item j (item embeddings tied between
input and output). Taught in `01_metatl`, section "Baselines", where it is trained on warm users
and applied to the K initial items of new users, and in `06_sequential_backbones`, section "Four
backbones". Heads, losses and the `Recommender` methods are the shared ones of `sequential.py`.

Sequences are chronological and **left-padded** with PAD (0), the layout of `EvalBatch.history`
and `Sequences.last`. Positions count from each sequence's first real item and padded keys are
masked, so adding left padding never changes a sequence's outputs (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.interactions import PAD
from .sequential import (SelfAttentionBlock, SequentialBackbone, SequentialConfig,
                         attention_mask, next_item_batches, positions_from_first_item)

__all__ = ["SASRec", "SASRecConfig", "next_item_batches"]


@dataclass
class SASRecConfig(SequentialConfig):
    n_heads: int = 2
    n_layers: int = 2


class SASRec(SequentialBackbone):
    def __init__(self, n_items: int, config: SASRecConfig = SASRecConfig(),
                 n_extra_tokens: int = 0):
        super().__init__(n_items, config, n_extra_tokens)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.blocks = nn.ModuleList(SelfAttentionBlock(config.dim, config.n_heads, config.dropout)
                                    for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, L, d]`` of left-padded sequences ``[B, L]`` (L <= max_len);
        attention is causal (``self.causal``; BERT4Rec's is bidirectional)."""
        self.check_length(sequences)
        position = positions_from_first_item(sequences)
        x = self.drop(self.items(sequences) * self.config.dim ** 0.5 + self.positions(position))
        allowed = attention_mask(sequences, self.causal)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x) * (sequences != PAD).unsqueeze(-1)
