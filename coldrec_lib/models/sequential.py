"""The contract of the sequential backbones (GRU4Rec, NARM, SASRec, BERT4Rec) and what they
share: the heads, the losses and the training batches. Taught in `06_sequential_backbones`,
sections "One contract" and "Three losses".

**Contract.** A `SequentialBackbone` implements one method,

    encode(items [B, L]) -> hidden [B, L, d]

on chronological item sequences **left-padded** with `PAD` (0), ``L <= config.max_len``. The
hidden state at a padded position is 0, and adding left padding never changes the states of the
real positions (tested for every backbone). Causal backbones (GRU4Rec, NARM, SASRec): the state
at t depends on items ``<= t`` only. BERT4Rec is bidirectional and reads ``[MASK]`` (id
``n_items + 1``) where an item is to be predicted. Everything else is built on ``encode``:

* ``logits(hidden) -> [..., n_items + 1]``: next-item scores ``h . e_j`` for every item j, with
  the item embeddings tied between input and output; the PAD column is -inf;
* ``predict_ratings(items) -> [B, L]``: a rating for the item at every position,
  ``low + (high - low) * sigmoid(h . w + b)``, always inside ``config.rating_range`` (the
  regression head MELO trains; it is zero-initialised and ignored by the next-item losses);
* ``loss(SequenceBatch)``: the next-item objective at every position with a target, chosen by
  ``config.loss``: ``"ce"`` full-softmax cross-entropy over the catalogue (SASRec+, Klenitskiy &
  Vasilev 2023, the default), ``"bce"`` binary cross-entropy of the target against sampled
  negatives (original SASRec, eq. 4 of Kang & McAuley 2018), ``"bpr"`` BPR (Rendle et al. 2009);
* ``score(EvalBatch)`` / ``score_candidates``: the `Recommender` contract, from the state at the
  last position of the ``max_len`` most recent history items, so one `Evaluator` serves all.

**Functional use.** Forward passes keep no Python-side state and never modify parameters in
place, so MELO can run any backbone with other weights through
``torch.func.functional_call(model, params, (items,), {"output": "ratings"})`` (``forward`` is
``encode``, or ``predict_ratings`` with ``output="ratings"``) and differentiate through it,
second order included (tested). The fused attention kernels (flash / memory-efficient) and
cuDNN's GRU have no double backward: run second-order inner loops inside `twice_differentiable()`
(torch's math attention, cuDNN off), first-order ones need nothing. Randomness of training (windows order, cloze masks, negatives) lives in the
batch builders below, which take an explicit ``torch.Generator``; dropout is the only randomness
of the forward pass.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..data.errors import DataError
from ..data.interactions import PAD
from ..data.sequences import Sequences
from ..data.splits import EvalBatch
from ..data.windows import sliding_windows
from .base import Recommender

LOSSES = ("ce", "bce", "bpr")


@dataclass
class SequentialConfig:
    max_len: int = 50        # the most recent items the model reads
    dim: int = 64
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    loss: str = "ce"         # "ce" (full softmax), "bce" or "bpr" (sampled negatives)
    n_negatives: int = 1     # negatives per target for "bce" / "bpr"
    stride: int | None = None  # sliding-window stride of `epoch_batches`; None = max_len
    rating_range: tuple[float, float] = (1.0, 5.0)


class SequenceBatch(NamedTuple):
    """One training batch, ``(inputs, targets[, negatives])`` as the batch builders yield it:
    ``targets[b, t]`` is the item to predict from position t (PAD: none); ``negatives
    [B, L, n]`` are sampled items for the "bce" / "bpr" losses."""

    inputs: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor | None = None


class SequentialBackbone(Recommender):
    """Item embeddings, the heads and the losses; subclasses define ``encode`` and their layers.
    ``n_extra_tokens`` reserves ids after ``n_items`` (BERT4Rec's ``[MASK]``)."""

    causal = True
    min_history = 1  # the next item is predicted from the items before it

    def __init__(self, n_items: int, config: SequentialConfig, n_extra_tokens: int = 0):
        super().__init__()
        if config.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {config.loss!r}")
        low, high = config.rating_range
        if not low < high:
            raise ValueError(f"rating_range must be (low, high) with low < high; got "
                             f"{config.rating_range}")
        self.n_items, self.config = n_items, config
        self.items = nn.Embedding(n_items + 1 + n_extra_tokens, config.dim, padding_idx=PAD)
        # the rating head starts at zero (predicts the middle of the range) and draws no random
        # numbers, so the other parameters' initialisation does not depend on it
        self.rating_weight = nn.Parameter(torch.zeros(config.dim))
        self.rating_bias = nn.Parameter(torch.zeros(()))

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, items: torch.Tensor, output: str = "hidden") -> torch.Tensor:
        """``encode(items)`` (``output="hidden"``) or ``predict_ratings(items)``
        (``"ratings"``): the entry point of ``torch.func.functional_call``."""
        if output == "hidden":
            return self.encode(items)
        if output == "ratings":
            return self.predict_ratings(items)
        raise ValueError(f"output must be 'hidden' or 'ratings'; got {output!r}")

    def check_length(self, items: torch.Tensor) -> None:
        if items.shape[1] > self.config.max_len:
            raise ValueError(f"sequences of length {items.shape[1]} exceed max_len="
                             f"{self.config.max_len}; keep the most recent items")

    # ------------------------------------------------------------------ heads
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-item scores ``[..., n_items + 1]`` (tied embeddings); the PAD column is -inf."""
        # + a bias row that is -inf at PAD and 0 elsewhere: the same numbers as masking the
        # column, bit for bit, but its backward passes the gradient through instead of copying
        # an [N, n_items + 1] masked gradient (a third of the full-softmax loss's time on a CPU)
        pad_bias = torch.zeros(self.n_items + 1, dtype=hidden.dtype, device=hidden.device)
        pad_bias[PAD] = float("-inf")
        return hidden @ self.items.weight[:self.n_items + 1].T + pad_bias

    def predict_ratings(self, items: torch.Tensor) -> torch.Tensor:
        """A rating for the item at every position ``[B, L]``, inside ``config.rating_range``
        (padded positions get the middle of the range; mask them)."""
        low, high = self.config.rating_range
        return low + (high - low) * torch.sigmoid(self.encode(items) @ self.rating_weight
                                                  + self.rating_bias)

    # ------------------------------------------------------------------ next-item loss
    def loss(self, batch) -> torch.Tensor:
        """The ``config.loss`` objective over the positions whose input and target are both
        real items (a plain ``(inputs, targets)`` pair works for "ce")."""
        batch = SequenceBatch(*batch)
        hidden = self.encode(batch.inputs)
        keep = (batch.targets != PAD) & (batch.inputs != PAD)
        hidden, targets = hidden[keep], batch.targets[keep]
        if self.config.loss == "ce":
            return F.cross_entropy(self.logits(hidden), targets)
        if batch.negatives is None:
            raise ValueError(f"loss={self.config.loss!r} needs sampled negatives in the batch "
                             "(n_negatives > 0 in the batch builder)")
        positive = (hidden * self.items(targets)).sum(-1, keepdim=True)            # [N, 1]
        negative = (hidden.unsqueeze(1) * self.items(batch.negatives[keep])).sum(-1)  # [N, n]
        if self.config.loss == "bce":
            return -(F.logsigmoid(positive).squeeze(1) + F.logsigmoid(-negative).sum(1)).mean()
        return -F.logsigmoid(positive - negative).mean()

    # ------------------------------------------------------------------ Recommender contract
    def next_item_hidden(self, history: torch.Tensor) -> torch.Tensor:
        """The state that predicts the item after ``history`` ``[B, d]``: the last position of
        the ``max_len`` most recent items (BERT4Rec overrides this)."""
        return self.encode(history[:, -self.config.max_len:])[:, -1]

    def score(self, batch: EvalBatch) -> torch.Tensor:
        return self.logits(self.next_item_hidden(batch.history))

    def score_candidates(self, batch: EvalBatch, candidates: torch.Tensor) -> torch.Tensor:
        hidden = self.next_item_hidden(batch.history)
        scores = (hidden.unsqueeze(1) * self.items(candidates)).sum(-1)
        return scores.masked_fill(candidates == PAD, float("-inf"))

    def epoch_batches(self, sequences: Sequences, generator: torch.Generator,
                      users: torch.Tensor | None = None, device="cpu") -> Iterator[tuple]:
        """One epoch of this model's training batches: sliding windows with every item a target
        (`next_item_batches`; BERT4Rec: `cloze_batches`)."""
        config = self.config
        return next_item_batches(sequences, config.max_len, config.batch_size, generator, users,
                                 device, stride=config.stride or config.max_len,
                                 n_negatives=self.n_negatives(), n_items=self.n_items)

    def n_negatives(self) -> int:
        return 0 if self.config.loss == "ce" else self.config.n_negatives


_TWICE_DIFFERENTIABLE = ContextVar("twice_differentiable", default=False)


@contextmanager
def twice_differentiable():
    """Kernels with a double backward, for second-order meta-learning (MAML, MELO): the math
    implementation of ``scaled_dot_product_attention`` and the GRU written out step by step
    (`unrolled_gru`) instead of cuDNN's or `GRURecurrence`'s hand-written backward."""
    token = _TWICE_DIFFERENTIABLE.set(True)
    try:
        with sdpa_kernel(SDPBackend.MATH), torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        _TWICE_DIFFERENTIABLE.reset(token)


# ---------------------------------------------------------------------- shared layers
class SelfAttentionBlock(nn.Module):
    """Pre-LayerNorm Transformer block: multi-head attention restricted by a mask (causal for
    SASRec, padding only for BERT4Rec), then a position-wise FFN."""

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


def attention_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """``[B, 1, L, L]``: query t may attend to real keys (earlier or equal ones if ``causal``)
    and always to itself, so no row is all-masked and padding is never attended by a real
    position."""
    length = items.shape[1]
    real = (items != PAD).unsqueeze(1)
    eye = torch.eye(length, dtype=torch.bool, device=items.device)
    if causal:
        real = real & torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    return (real | eye).unsqueeze(1)


def run_gru(gru: nn.GRU, x: torch.Tensor, real: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """A GRU over left-padded inputs ``x [B, L, d]`` (``real [B, L]`` marks the items); padding
    never enters the recurrence and comes out as 0. ``[B, L, hidden]``.

    ``fused=True``: on a GPU, torch's fused ``nn.GRU`` (cuDNN) over rows rolled to the left and
    packed, then rolled back; on a CPU, where ``nn.GRU`` runs step by step under autograd anyway,
    `GRURecurrence` (the same steps with a hand-written backward, ~1.8x faster forward and
    backward: `benchmarks/sequential.py`).
    ``fused=False``: `unrolled_gru`, the same equations step by step on the same weights, which
    `torch.func.vmap` can batch (MELO's MAML) and differentiate twice (also used for
    ``fused=True`` inside `twice_differentiable`).
    """
    if not fused or _TWICE_DIFFERENTIABLE.get():
        return unrolled_gru(gru, x, real)
    if x.is_cuda:
        return packed_gru(gru, x, real)
    return gru_layers(gru, x, real, GRURecurrence.apply)


def packed_gru(gru: nn.GRU, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """torch's ``nn.GRU`` module over the rows rolled to the left and packed, then rolled back
    (cuDNN's fused kernel on a GPU)."""
    length = x.shape[1]
    n_real = real.sum(1)
    shift = (length - n_real).unsqueeze(1)                 # padding on the left of each row
    steps = torch.arange(length, device=x.device)
    left = x.gather(1, ((steps + shift) % length).unsqueeze(-1).expand_as(x))
    packed = pack_padded_sequence(left, n_real.clamp(min=1).cpu(), batch_first=True,
                                  enforce_sorted=False)
    out, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=length)
    back = ((steps - shift) % length).unsqueeze(-1).expand(-1, -1, out.shape[-1])
    return out.gather(1, back) * real.unsqueeze(-1)


def gru_layers(gru: nn.GRU, x: torch.Tensor, real: torch.Tensor, recurrence) -> torch.Tensor:
    """``gru``'s layers over left-padded ``x``: the input terms of all steps in one matmul, then
    ``recurrence(gates_x [B, L, 3h], keep [B, L, 1], W_hh, b_hh) -> states [B, L, h]``; between
    layers the module's dropout."""
    keep = real.unsqueeze(-1).to(x.dtype)
    for layer in range(gru.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(gru, f"{name}_l{layer}")
                                  for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        x = recurrence(F.linear(x, w_ih, b_ih), keep, w_hh, b_hh)
        if layer < gru.num_layers - 1:
            x = F.dropout(x, gru.dropout, gru.training)
    return x


def unrolled_gru(gru: nn.GRU, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``nn.GRU``'s equations written out, layer by layer and step by step (`gru_step`), with its
    weights. The state stays 0 over the left padding, so the first real item starts from h = 0 as
    in the packed path; between layers the module's dropout."""
    return gru_layers(gru, x, real, _unrolled_recurrence)


def gru_step(gates_x: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor,
             b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step (Hidasi et al. 2016, eq. 1-4, torch's convention): ``gates_x [B, 3h]`` holds
    the input terms ``W_{r,z,n} x_t + b`` of the three gates, ``h [B, h]`` the previous state;
    returns ``h_t``. `06_sequential_backbones`, section "GRU4Rec"."""
    r_x, z_x, n_x = gates_x.chunk(3, -1)
    r_h, z_h, n_h = F.linear(h, w_hh, b_hh).chunk(3, -1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)   # reset and update gates
    candidate = torch.tanh(n_x + r * n_h)                          # h~_t
    return (1 - z) * candidate + z * h


def _unrolled_recurrence(gates_x, keep, w_hh, b_hh):
    h = gates_x.new_zeros(gates_x.shape[0], w_hh.shape[1])
    states = []
    for t, step_x in enumerate(gates_x.unbind(1)):
        h = keep[:, t] * gru_step(step_x, h, w_hh, b_hh)
        states.append(h)
    return torch.stack(states, 1)


class GRURecurrence(torch.autograd.Function):
    """One GRU layer's recurrence over left-padded rows, forward and a hand-written backward
    (the equations of `unrolled_gru`): autograd would record ~15 small ops per step and replay
    them one by one; here the backward of a step is 4 ops, everything that does not depend on
    the incoming gradient being computed for all steps at once. Not twice differentiable."""

    @staticmethod
    def forward(ctx, gates_x, keep, w_hh, b_hh):
        hidden = w_hh.shape[1]
        h = gates_x.new_zeros(gates_x.shape[0], hidden)
        states, rz, candidate, n_h = [], [], [], []
        for t in range(gates_x.shape[1]):
            gates_h = torch.addmm(b_hh, h, w_hh.t())
            r_z = torch.sigmoid(gates_x[:, t, :2 * hidden] + gates_h[:, :2 * hidden])
            n = torch.tanh(torch.addcmul(gates_x[:, t, 2 * hidden:], r_z[:, :hidden],
                                         gates_h[:, 2 * hidden:]))
            h = keep[:, t] * torch.addcmul(n, r_z[:, hidden:], h - n)  # (1 - z) n + z h
            states.append(h)
            rz.append(r_z)
            candidate.append(n)
            n_h.append(gates_h[:, 2 * hidden:])
        out = torch.stack(states, 1)
        ctx.save_for_backward(keep, w_hh, out, torch.stack(rz, 1), torch.stack(candidate, 1),
                              torch.stack(n_h, 1))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        keep, w_hh, out, rz, n, n_h = ctx.saved_tensors
        hidden = w_hh.shape[1]
        previous = torch.cat([torch.zeros_like(out[:, :1]), out[:, :-1]], 1)   # h_{t-1}
        r, z = rz[..., :hidden], rz[..., hidden:]
        # d h_t / d (pre-activations) for a unit gradient on h_t, all steps at once (keep folds
        # the padding in): n-gate input, r-gate, z-gate, and the recurrent n term W_hn h + b_hn
        d_n = keep * (1 - z) * (1 - n * n)
        d_r, d_z = d_n * n_h * r * (1 - r), keep * (previous - n) * z * (1 - z)
        through_z = keep * z
        coefficients_h = torch.cat([d_r, d_z, d_n * r], -1)          # [B, L, 3h]
        grad_h = torch.zeros_like(grad_out[:, 0])
        totals, grads_gates_h = [], []
        for t in range(grad_out.shape[1] - 1, -1, -1):
            total = grad_h + grad_out[:, t]                           # dL / d h_t
            grad_gates_h = total.repeat(1, 3) * coefficients_h[:, t]
            grad_h = torch.addmm(total * through_z[:, t], grad_gates_h, w_hh)
            totals.append(total), grads_gates_h.append(grad_gates_h)
        total = torch.stack(totals[::-1], 1)
        grad_gates_h = torch.stack(grads_gates_h[::-1], 1)
        grad_gates_x = torch.cat([grad_gates_h[..., :2 * hidden], total * d_n], -1)
        grad_w_hh = grad_gates_h.flatten(0, 1).t() @ previous.flatten(0, 1)
        return grad_gates_x, None, grad_w_hh, grad_gates_h.sum((0, 1))


def positions_from_first_item(items: torch.Tensor) -> torch.Tensor:
    """Position 0 = the sequence's first real item, whatever the amount of left padding."""
    return ((items != PAD).long().cumsum(1) - 1).clamp(min=0)


# ---------------------------------------------------------------------- training batches
def uniform_negatives(targets: torch.Tensor, n_negatives: int, n_items: int,
                      generator: torch.Generator) -> torch.Tensor:
    """``[*targets.shape, n_negatives]`` items drawn uniformly from the catalogue (an occasional
    draw of the target itself is the usual sampled-loss approximation)."""
    return torch.randint(1, n_items + 1, (*targets.shape, n_negatives), generator=generator)


def _batches(inputs, targets, batch_size, generator, n_negatives, n_items, device):
    order = torch.randperm(len(inputs), generator=generator)
    negatives = (uniform_negatives(targets, n_negatives, n_items, generator) if n_negatives
                 else None)
    for rows in order.split(batch_size):
        batch = (inputs[rows].to(device), targets[rows].to(device))
        yield batch if negatives is None else batch + (negatives[rows].to(device),)


def next_item_batches(sequences: Sequences, max_len: int, batch_size: int,
                      generator: torch.Generator, users: torch.Tensor | None = None,
                      device="cpu", stride: int | None = None, n_negatives: int = 0,
                      n_items: int | None = None) -> Iterator[tuple]:
    """One epoch of shifted (inputs, targets) windows of ``max_len`` in a fresh seeded order.

    ``stride=None``: one window per user with >= 2 items, their last ``max_len + 1`` items
    (MetaTL's SASRec baseline; older items are never targets). ``stride=s``: sliding windows
    (`data.windows`), every item but each user's first is a target exactly once per epoch.
    ``n_negatives > 0`` adds uniform negatives (needs ``n_items``)."""
    try:
        windows = sliding_windows(sequences, max_len + 1, stride or max_len, first=1,
                                  users=users, last_only=stride is None)
    except DataError:
        raise ValueError("next_item_batches: no user has the 2 items a next-item example "
                         "needs") from None
    items = windows.take(sequences.items)
    targets = items[:, 1:].masked_fill(~windows.owned[:, 1:], PAD)
    return _batches(items[:, :-1], targets, batch_size, generator, n_negatives, n_items, device)


def cloze_batches(sequences: Sequences, max_len: int, batch_size: int,
                  generator: torch.Generator, mask_token: int, mask_prob: float = 0.2,
                  users: torch.Tensor | None = None, device="cpu", stride: int | None = None,
                  n_negatives: int = 0, n_items: int | None = None) -> Iterator[tuple]:
    """One epoch of BERT4Rec's cloze task (Sun et al. 2019, section 3.6): sliding windows of
    ``max_len`` items; each item a window owns is replaced by ``mask_token`` with probability
    ``mask_prob`` and becomes a target (a window with no draw gets its last item masked, the
    inference setting), fresh masks every call."""
    windows = sliding_windows(sequences, max_len, stride, first=0, users=users)
    items = windows.take(sequences.items)
    masked = windows.owned & (torch.rand(items.shape, generator=generator) < mask_prob)
    masked[:, -1] |= ~masked.any(1)
    inputs = items.masked_fill(masked, mask_token)
    targets = items.masked_fill(~masked, PAD)
    return _batches(inputs, targets, batch_size, generator, n_negatives, n_items, device)
