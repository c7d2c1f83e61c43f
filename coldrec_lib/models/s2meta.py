"""s2Meta (Du et al., "Sequential Scenario-Specific Meta Learner for Online Recommendation",
KDD 2019): a meta-learned initialisation of the pair recommender, fine-tuned per scenario by a
*learned optimiser*. Taught in `03_cmml`, section "s2Meta: a learned optimiser".

* update controller (the paper's eq. 4-5): for every parameter tensor, an LSTM cell shared by
  all its coordinates reads, per coordinate, the preprocessed gradient, the parameter and the
  preprocessed support loss, and emits an input gate ``a`` (the step size) and a forget gate
  ``f``: ``theta <- f * theta - a * clamp(g, -1, 1)``. First order: ``g`` is a constant.
* stop controller (eq. 6): an LSTM cell over the per-tensor log gradient norms, the support loss
  and the step number emits ``p(stop)`` after every step from ``min_steps`` on; at most
  ``max_steps``. It is trained by REINFORCE with the advantage of continuing at step t
  ``A_t = L_query(t) - L_query(T) - penalty * (T - t)`` (T: the step where the scenario stopped):
  continuing pays off when the query loss fell by more than the penalty per extra step. This is
  REINFORCE with the return of stopping at t as the baseline (it depends on the state at t, not
  on the decision), so a decision to stop (T = t) has advantage exactly 0 and the stop
  probability learns through the decisions to continue.
* everything batched over N scenarios: each has its own weights ``[N, ...]`` and a stop mask;
  a stopped scenario's weights are frozen while the others go on.

Defects of the original code avoided: no learning-rate scheduler on the test metric (model
selection on validation Recall@20 only), no hard-coded ``.cuda(0)``, seeded negatives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.scenarios import PretrainedEmbeddings, ScenarioBatch
from .scenario import WeightAdaptingRecommender, inner_gradients


@dataclass
class S2MetaConfig:
    hidden: tuple[int, ...] = (64, 64, 64)
    controller_hidden: int = 4     # LSTM cell size of the coordinate-wise update controller
    stop_hidden: int = 16
    initial_step: float = 0.05     # the input gate's value before training
    min_steps: int = 4             # paper: 4
    max_steps: int = 20            # paper: 20
    step_penalty: float = 1e-3     # REINFORCE cost of one more step
    lr: float = 1e-3
    weight_decay: float = 1e-5


def preprocess(x: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """Andrychowicz et al. (2016): ``(log|x| / p, sign x)`` if ``|x| >= e^-p`` else
    ``(-1, e^p x)``; ``[...] -> [..., 2]``, so inputs of any scale reach the LSTM."""
    big = x.abs() >= math.exp(-p)
    first = torch.where(big, x.abs().clamp(min=1e-30).log() / p, torch.full_like(x, -1.0))
    second = torch.where(big, x.sign(), x * math.exp(p))
    return torch.stack([first, second], -1)


class UpdateController(nn.Module):
    """One parameter tensor's coordinate-wise LSTM: ``(g, theta, loss) -> (a, f)`` per
    coordinate."""

    def __init__(self, hidden: int, initial_step: float):
        super().__init__()
        self.cell = nn.LSTMCell(5, hidden)
        self.gates = nn.Linear(hidden, 2)
        nn.init.zeros_(self.gates.weight)
        with torch.no_grad():  # start as SGD with step `initial_step` and no forgetting
            self.gates.bias.copy_(torch.tensor([math.log(initial_step / (1 - initial_step)), 6.0]))

    def forward(self, gradient, parameter, loss, state):
        """s2Meta's gates per coordinate (`03_cmml`, section 4): the step size ``a`` and the
        forget gate ``f`` of ``theta' = f * theta - a * clip(g, -1, 1)``."""
        n = parameter.shape[0]
        inputs = torch.cat([preprocess(gradient), parameter.unsqueeze(-1),
                            preprocess(loss).view(n, *[1] * (parameter.dim() - 1), 2)
                            .expand(*parameter.shape, 2)], -1).view(-1, 5)
        state = self.cell(inputs, state)
        step, forget = torch.sigmoid(self.gates(state[0])).view(*parameter.shape, 2).unbind(-1)
        return step, forget, state


@dataclass
class Adaptation:
    """What `S2Meta.adapt` returns: the adapted weights, the steps each scenario took and, in
    training, the REINFORCE loss of the stop controller."""

    params: list[torch.Tensor]
    steps: torch.Tensor                 # [N]
    step_sizes: torch.Tensor            # [N] mean input gate over the steps taken
    stop_loss: torch.Tensor | None = None
    query_losses: list = field(default_factory=list)


class S2Meta(WeightAdaptingRecommender):
    def __init__(self, embeddings: PretrainedEmbeddings, config: S2MetaConfig = S2MetaConfig()):
        super().__init__(embeddings, config.hidden)
        self.config = config
        n_tensors = len(self.backbone.parameters_list())
        self.update = nn.ModuleList(UpdateController(config.controller_hidden, config.initial_step)
                                    for _ in range(n_tensors))
        self.stop_cell = nn.LSTMCell(n_tensors + 2, config.stop_hidden)
        self.stop_out = nn.Linear(config.stop_hidden, 1)
        self.last: Adaptation | None = None  # diagnostics of the latest batch

    def stop_probability(self, gradients, loss, step, state):
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in gradients], 1)
        inputs = torch.cat([norms.clamp(min=1e-8).log(), loss.unsqueeze(1),
                            torch.full_like(loss, step / self.config.max_steps).unsqueeze(1)], 1)
        state = self.stop_cell(inputs, state)
        return torch.sigmoid(self.stop_out(state[0])).squeeze(1), state

    def adapt(self, batch: ScenarioBatch) -> list[torch.Tensor]:
        self.last = self.adapt_with_stops(batch)
        return self.last.params

    def adapt_with_stops(self, batch: ScenarioBatch) -> Adaptation:
        """The learned optimiser on every scenario of the batch, each until its stop controller
        stops it (sampled in training, ``p > 0.5`` in evaluation). In training, the query loss
        after every step (no gradient) gives the REINFORCE advantages."""
        config, n = self.config, len(batch)
        params = self.initial_params(n)
        device = params[0].device
        alive = torch.ones(n, dtype=torch.bool, device=device)
        steps = torch.zeros(n, device=device)
        step_sum = torch.zeros(n, device=device)
        states = [None] * len(params)
        stop_state, log_probs, decisions, query_losses = None, [], [], []
        reinforce = self.training and batch.query_users is not None and torch.is_grad_enabled()
        for t in range(1, config.max_steps + 1):
            gradients, loss = inner_gradients(self, params, batch)
            new = []
            for i, (p, g) in enumerate(zip(params, gradients)):
                step, forget, states[i] = self.update[i](g, p.detach(), loss, states[i])
                keep = alive.view(n, *[1] * (p.dim() - 1))
                new.append(torch.where(keep, forget * p - step * g.clamp(-1, 1), p))
                if i == 0:
                    step_sum = step_sum + step.detach().flatten(1).mean(1) * alive
            params, steps = new, steps + alive
            if reinforce:
                with torch.no_grad():
                    query_losses.append(self.query_loss(params, batch))
            if t == config.max_steps:
                break
            if t >= config.min_steps:
                p_stop, stop_state = self.stop_probability(gradients, loss, t, stop_state)
                stop = (torch.bernoulli(p_stop.detach()).bool() if self.training
                        else p_stop > 0.5)
                if reinforce:
                    log_probs.append(torch.where(stop, p_stop, 1 - p_stop).clamp(min=1e-6).log())
                    decisions.append((t, alive.clone()))
                alive = alive & ~stop
                if not alive.any():
                    break
        stop_loss = None
        if reinforce and decisions:
            final = torch.stack(query_losses, 1).gather(1, (steps.long() - 1).unsqueeze(1))[:, 0]
            terms = []
            for log_prob, (t, was_alive) in zip(log_probs, decisions):
                advantage = query_losses[t - 1] - final - config.step_penalty * (steps - t)
                terms.append(-(advantage.detach() * log_prob * was_alive))
            stop_loss = torch.stack(terms, 1).sum(1).mean()
        return Adaptation(params, steps, step_sum / steps.clamp(min=1), stop_loss, query_losses)

    def loss(self, batch: ScenarioBatch) -> torch.Tensor:
        """Query hinge loss at the adapted weights (trains the initialisation and the update
        controller) plus the stop controller's REINFORCE loss."""
        adaptation = self.adapt_with_stops(batch)
        self.last = adaptation
        loss = self.query_loss(adaptation.params, batch).mean()
        return loss if adaptation.stop_loss is None else loss + adaptation.stop_loss
