"""GPT-2 next-item model (Volodkevich et al., "Autoregressive Generation Strategies for Top-K
Sequential Recommendations", arXiv 2409.17730): a decoder-only transformer over item ids,
Hugging Face's ``GPT2LMHeadModel`` built from a ``GPT2Config`` and trained from scratch (no
pretrained weights, nothing from a model hub).

Training is next-item prediction, ``-sum_t log softmax(h_t W^T)[i_{t+1}]`` over every position of
a user's last ``context + 1`` items (eq. 1 of the paper; `05_autoregressive_generation`, section
"Next-item training"). ``score`` is the one-pass top-K: the logits after the last history item.
The generation strategies (`coldrec_lib.generation`) use `prompt` and `step`, which encode the
history once and then extend its key/value cache one item at a time.

Vocabulary: ``0`` = PAD, ``1..n_items`` = items, ``n_items + 1`` = BOUNDARY, the model's
bos/eos token. GPT2Config's default bos/eos is 50256, which in a catalogue of more than 50k items
is a real item that would silently end generated sequences (a defect of the original code): here
every special token is set explicitly, none is an item, and BOUNDARY is never fed nor generated.
Sequences are left-padded (the layout of `EvalBatch.history`); positions count from each
sequence's first real item, so left padding never changes a sequence's outputs (tested).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from ..data.interactions import PAD
from ..data.splits import EvalBatch
from .base import Recommender
from .sequential import positions_from_first_item


@dataclass
class GPT2RecConfig:
    context: int = 128       # n_positions: the prompt plus the generated items must fit
    dim: int = 64            # n_embd
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.1     # residual, embedding and attention dropout
    lr: float = 1e-3
    batch_size: int = 64


class GPT2Rec(Recommender):
    min_history = 1  # the prompt

    def __init__(self, n_items: int, config: GPT2RecConfig = GPT2RecConfig()):
        super().__init__()
        self.n_items, self.config = n_items, config
        self.boundary = n_items + 1
        hf_config = GPT2Config(vocab_size=n_items + 2, n_positions=config.context,
                               n_embd=config.dim, n_layer=config.n_layers, n_head=config.n_heads,
                               resid_pdrop=config.dropout, embd_pdrop=config.dropout,
                               attn_pdrop=config.dropout, bos_token_id=self.boundary,
                               eos_token_id=self.boundary, pad_token_id=PAD)
        self.gpt = GPT2LMHeadModel(hf_config)

    # ------------------------------------------------------------------ forward passes
    def hidden(self, sequences: torch.Tensor) -> torch.Tensor:
        """Last-layer states ``[B, L, d]`` of left-padded sequences ``[B, L]``, L <= context."""
        if sequences.shape[1] > self.config.context:
            raise ValueError(f"sequences of length {sequences.shape[1]} exceed the context "
                             f"{self.config.context}; keep the most recent items")
        mask = sequences != PAD
        return self.gpt.transformer(input_ids=sequences, attention_mask=mask.long(),
                                    position_ids=positions_from_first_item(sequences),
                                    use_cache=False).last_hidden_state

    def item_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``[..., n_items + 1]``: the item columns, PAD at -inf (BOUNDARY dropped)."""
        logits = logits[..., :self.n_items + 1].float()
        logits[..., PAD] = float("-inf")
        return logits

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Next-item cross-entropy at every position whose input and target are real items (the
        LM head only runs on those positions)."""
        inputs, targets = batch
        keep = (inputs != PAD) & (targets != PAD)
        logits = self.gpt.lm_head(self.hidden(inputs)[keep])
        return F.cross_entropy(self.item_logits(logits), targets[keep])

    def score(self, batch: EvalBatch) -> torch.Tensor:
        """One-pass top-K scores: the logits after the ``context`` most recent history items."""
        history = batch.history[:, -self.config.context:]
        return self.item_logits(self.gpt.lm_head(self.hidden(history)[:, -1]))

    # ------------------------------------------------------------------ incremental decoding
    def prompt(self, history: torch.Tensor) -> tuple[torch.Tensor, "PrefixCache"]:
        """Encode left-padded prompts ``[B, L]`` once: (item logits after the last item
        ``[B, n_items + 1]``, the prompts' key/value cache)."""
        if history.shape[1] > self.config.context:
            raise ValueError(f"a prompt of {history.shape[1]} items exceeds the context "
                             f"{self.config.context}")
        mask = history != PAD
        out = self.gpt(input_ids=history, attention_mask=mask.long(),
                       position_ids=positions_from_first_item(history), use_cache=True,
                       logits_to_keep=1)
        cache = out.past_key_values
        return self.item_logits(out.logits[:, -1]), PrefixCache(
            [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers],
            mask, mask.sum(1))

    def step(self, items: torch.Tensor, cache: "PrefixCache") -> torch.Tensor:
        """Feed one item per row ``[B * repeats]`` after the cached ones; returns the item logits
        ``[B * repeats, n_items + 1]`` and extends ``cache``. The attention of a new item over
        its user's prompt reads the prompt's keys and values once for all the user's rows (they
        are never copied per sequence); over the items generated so far, its own row's.
        The same arithmetic as GPT-2's blocks (`GPT2Attention`, `GPT2MLP`), tested against a
        full forward pass and against ``generate()``."""
        position = cache.lengths.repeat_interleave(cache.repeats) + cache.generated
        if int(position.max()) >= self.config.context:
            raise ValueError(f"decoding past the context {self.config.context}: shorten the "
                             "prompt to leave room for the generated items")
        gpt = self.gpt.transformer
        x = gpt.wte(items) + gpt.wpe(position)                                  # [R, d]
        n_users, heads = len(cache.lengths), self.config.n_heads
        hidden = self.config.dim // heads
        for layer, block in enumerate(gpt.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(self.config.dim, dim=1)
            q = q.view(n_users, cache.repeats, heads, hidden).transpose(1, 2)  # [B, H, S, h]
            k, v = cache.append(layer, k.view(-1, heads, hidden), v.view(-1, heads, hidden))
            # scores over the prompt [B, H, S, L] and over the generated items [B, H, S, t]
            over_prompt = (q @ cache.keys[layer].transpose(-1, -2)).masked_fill(
                ~cache.mask[:, None, None, :], float("-inf"))
            k = k.view(n_users, cache.repeats, heads, -1, hidden).transpose(1, 2)
            v = v.view(n_users, cache.repeats, heads, -1, hidden).transpose(1, 2)
            over_generated = (q.unsqueeze(-2) @ k.transpose(-1, -2)).squeeze(-2)
            weights = torch.cat([over_prompt, over_generated], -1).mul(hidden ** -0.5).softmax(-1)
            length = over_prompt.shape[-1]
            attended = (weights[..., :length] @ cache.values[layer]
                        + (weights[..., length:].unsqueeze(-2) @ v).squeeze(-2))
            x = x + block.attn.c_proj(attended.transpose(1, 2).reshape(-1, self.config.dim))
            # GPT2MLP with its "gelu_new" (the tanh approximation) as one fused op
            x = x + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(x)), approximate="tanh"))
        cache.generated = cache.generated + 1
        logits = F.linear(gpt.ln_f(x), self.gpt.lm_head.weight[:self.n_items + 1])
        return logits.index_fill_(1, torch.tensor([PAD], device=logits.device), float("-inf"))


@dataclass
class PrefixCache:
    """Keys and values of B prompts (``[B, H, L, h]`` per layer, stored once) shared by
    ``repeats`` rows per user (sampled sequences or beams), and each row's own keys and values
    of the items generated so far (``[R, H, t, h]`` per layer, R = B * repeats)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor       # [B, L] True on real prompt items
    lengths: torch.Tensor    # [B] real prompt items
    repeats: int = 1
    generated: int = 0
    new_keys: list = field(default_factory=list)
    new_values: list = field(default_factory=list)

    def repeat(self, repeats: int) -> None:
        """Share each prompt among ``repeats`` rows (before anything is generated)."""
        if self.generated:
            raise ValueError("repeat() a prompt cache before generating")
        self.repeats = repeats

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        """Add the new item's key and value ``[R, H, h]`` of ``layer``; returns all generated
        ones ``[R, H, t, h]``."""
        if layer == len(self.new_keys):
            self.new_keys.append(key.unsqueeze(2))
            self.new_values.append(value.unsqueeze(2))
        else:
            self.new_keys[layer] = torch.cat([self.new_keys[layer], key.unsqueeze(2)], 2)
            self.new_values[layer] = torch.cat([self.new_values[layer], value.unsqueeze(2)], 2)
        return self.new_keys[layer], self.new_values[layer]

    def reorder(self, rows: torch.Tensor) -> None:
        """Beam search: row r continues row ``rows[r]`` (of the same user)."""
        self.new_keys = [k[rows] for k in self.new_keys]
        self.new_values = [v[rows] for v in self.new_values]
