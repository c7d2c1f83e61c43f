"""Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman, Jebara. *Variational Autoencoders for
Collaborative Filtering*, WWW 2018): the actor of RaCT, taught in `04_ract`, section "The actor".

A user is the binary vector ``x_u`` of the items they interacted with. The encoder reads the
L2-normalised vector after input dropout, the decoder returns one logit per item, and the
likelihood is multinomial (eq. 2 of Liang et al.):

    log p(x_u | z_u) = sum_i x_ui * log softmax(f(z_u))_i

Mult-VAE samples ``z_u = mu + eps * sigma`` with ``eps ~ N(0, 1)`` and maximises the ELBO with an
annealed KL weight ``beta = min(beta_cap, step / anneal_steps)`` (eq. 5 and section 2.2.2);
at test time ``z_u = mu``. Mult-DAE has no variational layer and, in Liang et al., a single
hidden layer, ``I -> 200 (tanh) -> I`` (`MultVAEConfig.dae`); it is trained on the likelihood plus
L2 (eq. 8).

The model works on ``n_items`` columns internally (column ``j`` is item ``j + 1``); ``score``
prepends the padding column so that it follows the `Recommender` contract.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import PAD
from ..data.splits import EvalBatch
from .base import Recommender


@dataclass
class MultVAEConfig:
    hidden_dims: tuple[int, ...] = (600,)  # encoder I -> 600 -> latent; the decoder mirrors it
    latent_dim: int = 200
    input_dropout: float = 0.5
    variational: bool = True               # False: Mult-DAE
    beta_cap: float = 0.2                  # KL weight reaches beta_cap ...
    anneal_steps: int = 200_000            # ... after beta_cap * anneal_steps updates
    l2: float = 0.0                        # weight of sum(W^2) over the weight matrices
    lr: float = 1e-3
    batch_size: int = 500

    def __post_init__(self):
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1); got {self.input_dropout}")
        if self.anneal_steps < 1 or self.beta_cap < 0:
            raise ValueError("anneal_steps must be >= 1 and beta_cap >= 0; got "
                             f"{self.anneal_steps} and {self.beta_cap}")
        self.hidden_dims = tuple(self.hidden_dims)

    @classmethod
    def dae(cls, **overrides) -> "MultVAEConfig":
        """Mult-DAE as in Liang et al.: ``I -> 200 -> I`` (one tanh layer, no variational layer,
        their ``p_dims = [200, n_items]``), L2 of 0.01 / batch size."""
        batch_size = overrides.get("batch_size", cls.batch_size)
        return cls(**{"variational": False, "hidden_dims": (), "latent_dim": 200,
                      "l2": 0.01 / batch_size, **overrides})


def multinomial_nll(logits: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``-sum_i items_i * log softmax(logits)_i`` per user ``[B]`` (Liang et al., eq. 2). RaCT's
    critic reads it over the user's whole row, or over the held-out items only
    (`CriticConfig.nll_items`)."""
    return -(F.log_softmax(logits, dim=1) * items).sum(1)


def binary_rows(items: torch.Tensor, n_items: int, dtype=torch.float32) -> torch.Tensor:
    """Padded item ids ``[B, L]`` -> binary user rows ``[B, n_items]`` (column ``j`` is item
    ``j + 1``; padding is dropped)."""
    rows = torch.zeros(len(items), n_items + 1, dtype=dtype, device=items.device)
    rows.scatter_(1, items, 1)
    return rows[:, PAD + 1:]


def weight_penalty(module: nn.Module) -> torch.Tensor:
    """``sum ||W||^2`` over the weight matrices of the ``nn.Linear`` layers (biases excluded)."""
    return sum(m.weight.pow(2).sum() for m in module.modules() if isinstance(m, nn.Linear))


class MultVAE(Recommender):
    """Mult-VAE (``config.variational``) or Mult-DAE. ``loss(x)`` takes a dense batch of user
    rows ``[B, n_items]`` (from `user_batches`); ``score(batch)`` builds them from the history."""

    def __init__(self, n_items: int, config: MultVAEConfig = MultVAEConfig()):
        super().__init__()
        if n_items < 2:
            raise ValueError(f"n_items must be >= 2; got {n_items}")
        self.n_items, self.config = n_items, config
        dims = (n_items, *config.hidden_dims)
        code = config.latent_dim * (2 if config.variational else 1)  # VAE: mean and log-variance
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, (*dims[1:], code)))
        back = (config.latent_dim, *reversed(dims))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back[:-1], back[1:]))
        for layer in (*self.encoder, *self.decoder):  # Liang et al.'s initialisation
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)
        self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ input and KL schedule
    @property
    def keep_prob(self) -> float:
        return 1.0 - self.config.input_dropout

    def draw_keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Bernoulli(keep_prob) per entry: 1 = the item stays in the input (``rand < keep_prob``,
        a third of the time of ``torch.bernoulli`` on CPU)."""
        return (torch.rand_like(x) < self.keep_prob).to(x.dtype)

    def normalised_input(self, x: torch.Tensor, keep_mask: torch.Tensor | None = None):
        """``normalise(x) * mask / keep_prob``: L2-normalise the user's row, then input dropout
        with the usual rescaling (no mask: the whole row, as at test time)."""
        if x.dim() != 2 or x.shape[1] != self.n_items:
            raise ValueError(f"expected user rows of shape [B, {self.n_items}]; got "
                             f"{tuple(x.shape)}")
        h = F.normalize(x, dim=1)
        return h if keep_mask is None else h * keep_mask / self.keep_prob

    def kl_weight(self, step: int | None = None) -> float:
        """``beta = min(beta_cap, step / anneal_steps)``; 0 for Mult-DAE."""
        if not self.config.variational:
            return 0.0
        step = int(self.anneal_step) if step is None else step
        return min(self.config.beta_cap, step / self.config.anneal_steps)

    # ------------------------------------------------------------------ network
    def encode(self, x: torch.Tensor, keep_mask: torch.Tensor | None = None):
        """-> ``(mu, logvar)``; ``logvar`` is None for Mult-DAE."""
        h = self.normalised_input(x, keep_mask)
        for layer in self.encoder[:-1]:
            h = torch.tanh(layer(h))
        h = self.encoder[-1](h)
        if not self.config.variational:
            return torch.tanh(h), None
        return h[:, :self.config.latent_dim], h[:, self.config.latent_dim:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            z = torch.tanh(layer(z))
        return self.decoder[-1](z)

    def forward(self, x: torch.Tensor, keep_mask: torch.Tensor | None = None):
        """-> ``(logits [B, n_items], mu, logvar)``. In training mode Mult-VAE samples
        ``z = mu + eps * exp(logvar / 2)``, ``eps ~ N(0, 1)``; in eval mode ``z = mu``."""
        mu, logvar = self.encode(x, keep_mask)
        z = mu
        if self.training and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    # ------------------------------------------------------------------ Recommender contract
    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative annealed ELBO (Mult-VAE) or NLL + L2 (Mult-DAE), averaged over users. In
        training mode it draws the input dropout mask and advances the KL annealing step."""
        keep_mask = self.draw_keep_mask(x) if self.training else None
        logits, mu, logvar = self(x, keep_mask)
        loss = multinomial_nll(logits, x).mean()
        if logvar is not None:
            kl = 0.5 * (torch.exp(logvar) + mu.pow(2) - 1.0 - logvar).sum(1).mean()
            loss = loss + self.kl_weight() * kl
            if self.training and torch.is_grad_enabled():
                self.anneal_step += 1
        if self.config.l2:
            loss = loss + self.config.l2 * weight_penalty(self)
        return loss

    def score(self, batch: EvalBatch) -> torch.Tensor:
        logits = self(binary_rows(batch.history, self.n_items))[0]
        return torch.cat([logits.new_full((len(logits), 1), float("-inf")), logits], 1)


# ---------------------------------------------------------------------- training data
class UserRows:
    """Each training user's items as one row of a sparse binary matrix (CSR layout), turned into
    dense ``[B, n_items]`` batches on the device without a per-user loop."""

    def __init__(self, train: pd.DataFrame, n_items: int):
        if len(train) == 0:
            raise ValueError("the training frame is empty: no user rows to train on")
        items = train["item"].to_numpy()
        if items.min() < 1 or items.max() > n_items:
            raise ValueError(f"item ids must lie in 1..{n_items}; found "
                             f"{items.min()}..{items.max()}")
        order = np.argsort(train["user"].to_numpy(), kind="stable")
        users = train["user"].to_numpy()[order]
        _, counts = np.unique(users, return_counts=True)
        self.offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.long)
        self.columns = torch.as_tensor(items[order] - 1, dtype=torch.long)  # item i -> column i-1
        self.n_items = n_items

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def to(self, device) -> "UserRows":
        self.offsets, self.columns = self.offsets.to(device), self.columns.to(device)
        return self

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """Binary rows ``[len(rows), n_items]`` for the given user rows."""
        rows = rows.to(self.offsets.device)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        which = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
        first = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths)
        position = torch.arange(len(which), device=rows.device) + first
        out = torch.zeros(len(rows), self.n_items, device=rows.device)
        out[which, self.columns[position]] = 1.0
        return out


def user_batches(rows: UserRows, batch_size: int, generator: torch.Generator
                 ) -> Iterator[torch.Tensor]:
    """One epoch of dense user rows in a fresh seeded order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    order = torch.randperm(len(rows), generator=generator)
    for chunk in order.split(batch_size):
        yield rows.dense(chunk)
