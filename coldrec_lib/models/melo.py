"""MELO's adaptive loss network (Kim et al., CIKM 2023, arXiv 2302.14640, section 3.3): the inner
loop of MAML++ minimises a *learned*, task-adaptive loss instead of the plain squared error.

Both networks weight the squared error of every non-padded support position,
``L_support = Σ_p w_p (ŷ_p - y_p)² / #positions`` (the inner-loss contract of `meta.maml`), and are meta-learned through the inner loop
(their parameters reach the query loss only through the adapted backbone: second order).
Taught in `02_melo`, section "The learned loss".

* `TaskStateLoss` (MELO's default, the *task-state encoder*): each support sub-window's rating
  sequence (integers 1..5, 0 = padding) is embedded, read by an LSTM with a learned initial
  state, and a linear head with ``abs`` gives one weight per position, divided by the task's mean
  weight: the network shares the support loss out, the inner learning rates set its size.
  Unnormalised, its easiest gain is a uniformly bigger inner step (Adam at 0.1 grows every
  weight alike and saturates the LSTM). It sees the support's ratings, so it can weight rare
  ratings differently from common ones: the imbalance the paper targets.
* `MetalLoss` (the METAL-style alternative, Baik et al. ICCV 2021): an MLP over
  ``[task rating mean, task rating std, label, prediction, squared error]`` per position, so the
  weight also follows the current prediction at every inner step.

`make_meta_learner` builds Basic's MAML (squared error), MAML++ or MELO around a backbone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.interactions import PAD
from ..meta.maml import MAML, MAMLConfig, masked_mse

LOSSES = ("mse", "lstm", "metal")


@dataclass
class MELOConfig:
    loss: str = "lstm"            # "mse" (MAML++), "lstm" (MELO) or "metal"
    max_rating: int = 5
    rating_dim: int = 16          # rating embedding (max_rating + 2) x 16
    lstm_hidden: int = 32
    normalise_weights: bool = True  # the task-state weights average 1 over a task's positions
    metal_hidden: int = 5
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    outer_lr: float = 1e-3        # backbone, cosine-annealed to outer_lr_min
    outer_lr_min: float = 1e-4
    lr_lr: float = 0.05           # Adam on the log inner learning rates
    loss_lr: float = 0.1          # Adam on the loss network (the paper's 0.1)
    grad_clip: float = 5.0


class TaskStateLoss(nn.Module):
    """The task-state encoder: LSTM over the support's rating sequences -> a weight per position."""

    def __init__(self, max_rating: int = 5, rating_dim: int = 16, hidden: int = 32,
                 normalise: bool = True):
        super().__init__()
        self.normalise = normalise
        self.embedding = nn.Embedding(max_rating + 2, rating_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(rating_dim, hidden, batch_first=True)
        self.h0 = nn.Parameter(0.1 * torch.randn(hidden))
        self.c0 = nn.Parameter(0.1 * torch.randn(hidden))
        self.out = nn.Linear(hidden, 1)

    def task_state(self, support_items: torch.Tensor, support_ratings: torch.Tensor) -> torch.Tensor:
        """Weights ``[T, S, L]`` for every support position of every task, in one LSTM call:
        ``|a . h_p + b|`` divided by its mean over the task's support (`02_melo`, section 5)."""
        t, s, length = support_ratings.shape
        x = self.embedding(support_ratings.long().reshape(t * s, length))
        start = (self.h0.expand(1, t * s, -1).contiguous(), self.c0.expand(1, t * s, -1).contiguous())
        hidden, _ = self.lstm(x, start)
        weights = self.out(hidden).squeeze(-1).abs().reshape(t, s, length)
        if not self.normalise:
            return weights
        real = (support_items != PAD).float()
        mean = (weights * real).sum((1, 2)) / real.sum((1, 2)).clamp(min=1)
        return weights / mean.clamp(min=1e-8)[:, None, None]

    def forward(self, weights, pred, target, step: int) -> torch.Tensor:
        return weights * (pred - target) ** 2

    @torch.no_grad()
    def weight_profile(self, tasks) -> dict[str, dict[int, float]]:
        """What the network learned, made visible: the mean weight over the non-padded support
        positions of ``tasks``, by rating value (``by_rating``) and by position counted from the
        end of the sub-window (``by_position``: 0 = its last item)."""
        weights = self.task_state(tasks.support_items, tasks.support_ratings)
        real = tasks.support_items != PAD
        ratings = tasks.support_ratings[real].long()
        from_end = (torch.arange(real.shape[-1] - 1, -1, -1).expand_as(real))[real]
        return {key: {int(v): float(weights[real][values == v].mean()) for v in values.unique()}
                for key, values in (("by_rating", ratings), ("by_position", from_end))}


class MetalLoss(nn.Module):
    """METAL-style: an MLP over [rating mean, std, label, prediction, squared error] -> weight."""

    def __init__(self, hidden: int = 5, max_rating: int = 5):
        super().__init__()
        self.max_rating = max_rating
        self.mlp = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def task_state(self, support_items: torch.Tensor, support_ratings: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation of each task's support ratings (rating / max_rating), at
        every support position: ``[T, S, L, 2]``."""
        mask = (support_items != PAD).float()
        n = mask.sum((1, 2)).clamp(min=1)
        y = support_ratings / self.max_rating
        mean = (y * mask).sum((1, 2)) / n
        std = (((y - mean[:, None, None]) ** 2 * mask).sum((1, 2)) / n).sqrt()
        return torch.stack([mean, std], -1)[:, None, None, :].expand(*support_items.shape, 2)

    def forward(self, state, pred, target, step: int) -> torch.Tensor:
        error = (pred - target) ** 2
        features = torch.cat([state, torch.stack([target, pred, error], -1)], -1)
        return self.mlp(features).squeeze(-1).abs() * error


class RatingOutput(nn.Module):
    """A backbone seen as ``items -> rating / max_rating at every position`` (its rating head),
    the scale MAML's losses and inner learning rates work in (as the authors')."""

    def __init__(self, backbone: nn.Module, max_rating: float = 5.0):
        super().__init__()
        self.backbone, self.max_rating = backbone, max_rating

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.backbone(items, output="ratings") / self.max_rating


def make_meta_learner(backbone: nn.Module, config: MELOConfig) -> MAML:
    """MAML++ around ``backbone``'s rating head, with the support loss ``config.loss``."""
    if config.loss not in LOSSES:
        raise ValueError(f"MELO loss must be one of {LOSSES}; got {config.loss!r}")
    inner = {"mse": None,
             "lstm": lambda: TaskStateLoss(config.max_rating, config.rating_dim, config.lstm_hidden,
                                           config.normalise_weights),
             "metal": lambda: MetalLoss(config.metal_hidden, config.max_rating)}[config.loss]
    return MAML(RatingOutput(backbone, config.max_rating), config.maml, inner() if inner else None,
                scale=float(config.max_rating))


def meta_optimizer(maml: MAML, config: MELOConfig) -> torch.optim.Optimizer:
    """Adam with three groups: the backbone (``outer_lr``), the log inner learning rates
    (``lr_lr``) and the loss network (``loss_lr``)."""
    groups = [{"params": list(maml.model.parameters()), "lr": config.outer_lr},
              {"params": [p for p in maml.log_lrs.parameters() if p.requires_grad],
               "lr": config.lr_lr},
              {"params": list(maml.inner_loss.parameters()), "lr": config.loss_lr}]
    return torch.optim.Adam([g for g in groups if g["params"]])


class BasicRater(nn.Module):
    """The "Basic" row of the paper's tables: the same backbone and rating head trained on the
    same tasks by plain regression (support positions and query targets), with no adaptation."""

    def __init__(self, backbone: nn.Module, max_rating: int = 5):
        super().__init__()
        self.model, self.scale = RatingOutput(backbone, max_rating), float(max_rating)

    def loss(self, tasks) -> torch.Tensor:
        length = tasks.support_items.shape[-1]
        items = tasks.support_items.reshape(-1, length)
        support = masked_mse(self.model(items), tasks.support_ratings.reshape(-1, length)
                             / self.scale, items != PAD)
        query = (self.model(tasks.query_items.reshape(-1, length))[:, -1]
                 - tasks.query_ratings[..., -1].reshape(-1) / self.scale)
        return (support + (query ** 2).mean()) / 2

    def predict(self, tasks) -> torch.Tensor:
        with torch.no_grad():
            return self.model(tasks.query_items[:, 0])[:, -1] * self.scale
