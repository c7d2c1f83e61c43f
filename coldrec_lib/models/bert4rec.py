"""BERT4Rec (Sun et al., CIKM 2019): a *bidirectional* Transformer over the item sequence,
trained on the cloze task: items are replaced by ``[MASK]`` with probability ``mask_prob`` and
predicted from both sides (section 3.6 of the paper, eq. 8). At inference ``[MASK]`` is appended
after the history and its state scores the next item (tied item embeddings). Taught in
`06_sequential_backbones`, section "Four backbones".

The network is SASRec's (`sasrec.py`: embeddings, learned positions counted from the first real
item, pre-LN blocks) with attention restricted by a key-padding mask only, so padding is never
attended and left padding changes nothing. ``[MASK]`` is item id ``n_items + 1`` (an extra row of
the embedding table, never scored). The original's projection + GELU before the output layer and
its output bias are left out: the shared tied head is used as for the other backbones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.sequences import Sequences
from .sasrec import SASRec, SASRecConfig
from .sequential import cloze_batches


@dataclass
class BERT4RecConfig(SASRecConfig):
    dropout: float = 0.1
    mask_prob: float = 0.2   # the paper's rho for MovieLens


class BERT4Rec(SASRec):
    causal = False

    def __init__(self, n_items: int, config: BERT4RecConfig = BERT4RecConfig()):
        if config.max_len < 2:
            raise ValueError(f"BERT4Rec needs max_len >= 2 (history + [MASK]); got {config.max_len}")
        super().__init__(n_items, config, n_extra_tokens=1)
        self.mask_token = n_items + 1

    def next_item_hidden(self, history: torch.Tensor) -> torch.Tensor:
        """The state of ``[MASK]`` appended after the ``max_len - 1`` most recent items."""
        recent = history[:, -(self.config.max_len - 1):]
        mask = torch.full_like(recent[:, :1], self.mask_token)
        return self.encode(torch.cat([recent, mask], 1))[:, -1]

    def epoch_batches(self, sequences: Sequences, generator: torch.Generator,
                      users: torch.Tensor | None = None, device="cpu"):
        """One epoch of cloze batches (`cloze_batches`), fresh masks each call."""
        config = self.config
        return cloze_batches(sequences, config.max_len, config.batch_size, generator,
                             self.mask_token, config.mask_prob, users, device, config.stride,
                             self.n_negatives(), self.n_items)
