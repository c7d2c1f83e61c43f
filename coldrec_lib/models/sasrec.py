"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence, trained
with full-softmax cross-entropy over the catalogue ("SASRec+", as in Klenitskiy & Vasilev,
RecSys 2023) instead of the original one-negative binary loss.

``h_t = Transformer(e_{i_1} + p_1, ..., e_{i_t} + p_t)`` with causal attention, and the next-item
scores ``h_t . e_j`` for every item j (item embeddings tied between input and output). Taught in
`01_metatl`, section "Baselines", where it is trained on warm users and applied to the K initial
items of new users; reused by later notebooks.

Sequences are chronological and **left-padded** with PAD (0), the layout of `EvalBatch.history`
and `Sequences.last`. Positions count from each sequence's first real item and padded keys are
masked, so adding left padding never changes a sequence's outputs (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import PAD
from ..data.sequences import Sequences
from ..data.splits import EvalBatch
from .base import Recommender


@dataclass
class SASRecConfig:
    max_len: int = 50        # the most recent items the model reads
    dim: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128


class CausalSelfAttentionBlock(nn.Module):
    """Pre-LayerNorm Transformer block: causal multi-head attention, then a position-wise FFN."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x [B, L, d]``; ``allowed [B, 1, L, L]`` True where query t may attend to key s."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.n_heads, dim // self.n_heads
                                               ).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(Recommender):
    def __init__(self, n_items: int, config: SASRecConfig = SASRecConfig()):
        super().__init__()
        self.n_items, self.config = n_items, config
        self.items = nn.Embedding(n_items + 1, config.dim, padding_idx=PAD)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.blocks = nn.ModuleList(CausalSelfAttentionBlock(config.dim, config.n_heads,
                                                             config.dropout)
                                    for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[B, L, d]`` of left-padded sequences ``[B, L]`` (L <= max_len)."""
        if sequences.shape[1] > self.config.max_len:
            raise ValueError(f"sequences of length {sequences.shape[1]} exceed max_len="
                             f"{self.config.max_len}; keep the most recent items")
        real = sequences != PAD
        # position 0 = the sequence's first real item, whatever the amount of left padding
        position = (real.long().cumsum(1) - 1).clamp(min=0)
        x = self.drop(self.items(sequences) * self.config.dim ** 0.5 + self.positions(position))
        length = sequences.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        # a query attends to earlier real items and always to itself (so no row is all-masked)
        allowed = (causal & real.unsqueeze(1)) | torch.eye(length, dtype=torch.bool,
                                                           device=sequences.device)
        allowed = allowed.unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x) * real.unsqueeze(-1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-item scores ``[..., n_items + 1]`` (tied embeddings); the PAD column is -inf."""
        scores = hidden @ self.items.weight.T
        scores[..., PAD] = float("-inf")
        return scores

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Full-softmax cross-entropy of the next item at every position whose input and target
        are both real items."""
        inputs, targets = batch
        hidden = self.encode(inputs)
        keep = (targets != PAD) & (inputs != PAD)
        return F.cross_entropy(self.logits(hidden[keep]), targets[keep])

    def score(self, batch: EvalBatch) -> torch.Tensor:
        history = batch.history[:, -self.config.max_len:]
        return self.logits(self.encode(history)[:, -1])


def next_item_batches(sequences: Sequences, max_len: int, batch_size: int,
                      generator: torch.Generator, users: torch.Tensor | None = None,
                      device="cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (inputs, targets) for `SASRec.loss`: each user with >= 2 items contributes
    their last ``max_len + 1`` items, left-padded, shifted by one; users in a fresh seeded order."""
    candidates = torch.arange(sequences.n_users) if users is None else torch.as_tensor(users)
    candidates = candidates[sequences.lengths[candidates] >= 2]
    if len(candidates) == 0:
        raise ValueError("next_item_batches: no user has the 2 items a next-item example needs")
    order = candidates[torch.randperm(len(candidates), generator=generator)]
    for rows in order.split(batch_size):
        window = sequences.last(rows, max_len + 1)
        yield window[:, :-1].to(device), window[:, 1:].to(device)
