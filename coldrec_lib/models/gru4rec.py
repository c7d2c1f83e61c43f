"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018): a GRU reads the item
sequence and its state at t scores the next item, ``h_t = GRU(e_{i_t}, h_{t-1})`` (eq. 1-4 of
the 2016 paper) and ``score_j = h_t . e_j`` with tied item embeddings. The original's session-
parallel mini-batches and TOP1 loss are replaced by the shared sliding windows and losses
(`sequential.py`; ``loss="bpr"`` is the paper's BPR variant). Taught in
`06_sequential_backbones`, section "Four backbones".

Left padding is never read by the recurrence (`sequential.run_gru`): on a GPU torch's fused
``nn.GRU`` (cuDNN) runs over packed sequences; on a CPU `sequential.GRURecurrence` runs the same
steps with a hand-written backward; ``fused=False`` writes the GRU out step by step so that
MELO's `vmap` can batch it and differentiate it twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.interactions import PAD
from .sequential import SequentialBackbone, SequentialConfig, run_gru


@dataclass
class GRU4RecConfig(SequentialConfig):
    n_layers: int = 1
    dropout: float = 0.1
    fused: bool = True      # False: the step-by-step GRU that vmap batches (MELO's MAML)


class GRU4Rec(SequentialBackbone):
    def __init__(self, n_items: int, config: GRU4RecConfig = GRU4RecConfig()):
        super().__init__(n_items, config)
        self.drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.dim, config.n_layers, batch_first=True,
                          dropout=config.dropout if config.n_layers > 1 else 0.0)
        nn.init.normal_(self.items.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """GRU states ``[B, L, d]`` of left-padded sequences ``[B, L]`` (L <= max_len)."""
        self.check_length(items)
        return self.drop(run_gru(self.gru, self.drop(self.items(items)), items != PAD,
                                     self.config.fused))
