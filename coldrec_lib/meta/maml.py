"""Functional MAML++ on ``torch.func``: a whole meta-batch of tasks adapted in one vectorised call.

MAML (Finn et al. 2017) learns initial parameters θ that a few gradient steps on a task's support
set turn into good task parameters; MAML++ (Antoniou et al. 2019, "How to train your MAML") makes
it trainable. Taught in `02_melo`, sections "MAML" and "MAML++":

* inner loop, for each task i and step s = 0..S-1 (eq. 1 of MAML):
  ``θ_i^{s+1} = θ_i^s - α_s ⊙ ∇_θ L_support(θ_i^s)``, starting at ``θ_i^0 = θ``;
* **LSLR**: one learnable inner learning rate per parameter tensor and per step,
  ``α_s = exp(log α_s)`` (always positive: the original's rates can go negative);
* **multi-step loss (MSL)**: the outer loss is ``Σ_s v_s L_query(θ_i^{s+1})`` with the importance
  vector ``v`` of `multi_step_weights`, annealed to the last step only;
* **derivative-order annealing**: first-order gradients (the inner gradients treated as
  constants) for the first ``first_order_iterations`` iterations, second order afterwards;
* the support loss is pluggable (``inner_loss``): plain squared error for MAML, MELO's learned
  loss network for MELO; its parameters are meta-learned *through* the inner loop (second order);
* **padding trimmed**: support sub-windows are ~10 items long on average but padded to 30; the
  rows (longest first) run in chunks of ``chunk_rows``, each cut to the longest row of that chunk
  over the meta-batch (left padding never changes a backbone's real positions), about half the
  FLOPs of running every row at full length.

The adapted parameters of the T tasks are computed at once: ``torch.func.vmap`` over tasks of a
function that calls ``torch.func.grad`` of ``functional_call(model, params, ...)`` S times; no
Python loop over tasks and no copy of the model (the original deep-copies it for every task).
`query_losses_loop` is the task-by-task loop shaped like the authors' code, kept as the reference
the vectorised path is tested and benchmarked against.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..data.interactions import PAD
from ..data.melo_tasks import MeloTasks


@dataclass
class MAMLConfig:
    inner_steps: int = 3
    inner_lr: float = 1e-3               # initial value of every α_s
    learn_inner_lr: bool = True          # LSLR
    second_order: bool = True
    first_order_iterations: int = 0      # derivative-order annealing (0: second order throughout)
    multi_step_iterations: int = 1000    # MSL anneals to the last step over this many iterations
    trim_padding: bool = True            # run support rows in chunks cut to their longest row
    chunk_rows: int = 5


def multi_step_weights(steps: int, iteration: int, anneal_iterations: int) -> torch.Tensor:
    """MAML++'s importance vector ``v`` over the inner steps (`02_melo`, section 4): uniform at
    iteration 0; the weight of the earlier steps decays linearly (down to ``0.03 / steps``) and
    the last step takes the rest; from ``anneal_iterations`` on only the last step counts."""
    if iteration >= anneal_iterations:
        return torch.eye(steps)[-1]
    decay = 1.0 / steps / anneal_iterations
    floor = 0.03 / steps
    weights = torch.full((steps,), 1.0 / steps)
    weights[:-1] = (weights[:-1] - iteration * decay).clamp(min=floor)
    weights[-1] = min(1.0 / steps + iteration * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return weights


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the non-padded positions of ``(pred - target)²``."""
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1)


class SquaredError(nn.Module):
    """The plain MAML support loss: squared error at every position.

    The inner-loss contract: ``task_state(support_items, support_ratings) -> [T, S, L, ...]``, a
    state per support position computed for the whole meta-batch at once, and
    ``forward(state, pred, target, step) -> [rows, L]``, the loss at every position (MAML
    averages it over the non-padded ones)."""

    def task_state(self, support_items: torch.Tensor, support_ratings: torch.Tensor) -> torch.Tensor:
        return torch.zeros(support_items.shape)

    def forward(self, state, pred, target, step: int) -> torch.Tensor:
        return (pred - target) ** 2


class MAML(nn.Module):
    """MAML++ around ``model`` (items ``[N, L]`` -> ratings / ``scale`` at every position
    ``[N, L]``). ``inner_loss`` has ``task_state(support_items, support_ratings) -> [T, ...]``
    (computed for the meta-batch at once) and ``forward(state, pred, target, mask, step)``."""

    def __init__(self, model: nn.Module, config: MAMLConfig | None = None,
                 inner_loss: nn.Module | None = None, scale: float = 5.0):
        super().__init__()
        self.model, self.config, self.scale = model, config or MAMLConfig(), scale
        self.inner_loss = inner_loss if inner_loss is not None else SquaredError()
        start = torch.full((self.config.inner_steps,), float(torch.tensor(self.config.inner_lr).log()))
        self.log_lrs = nn.ParameterDict({
            _key(name): nn.Parameter(start.clone(), requires_grad=self.config.learn_inner_lr)
            for name, _ in model.named_parameters()})
        self.iteration = 0  # outer iterations so far: drives the MSL and derivative-order schedules

    # ------------------------------------------------------------------ one task
    def inner_lrs(self) -> dict[str, torch.Tensor]:
        """α_s for every parameter: ``{name: [inner_steps]}``, positive by construction."""
        return {name: self.log_lrs[_key(name)].exp() for name, _ in self.model.named_parameters()}

    def _predict(self, params, items):
        return functional_call(self.model, params, (items,))

    def _support_loss(self, params, state, items, ratings, step, chunks):
        """The inner loss of one task, over the non-padded positions of its support rows, run
        in ``chunks`` of ``(first row, last row, columns)``."""
        total = 0.0
        for first, last, columns in chunks:
            rows = slice(first, last)
            cut = (rows, slice(items.shape[-1] - columns, None))
            losses = self.inner_loss(state[cut], self._predict(params, items[cut]),
                                     ratings[cut] / self.scale, step)
            total = total + (losses * (items[cut] != PAD)).sum()
        return total / (items != PAD).sum().clamp(min=1)

    def support_chunks(self, support_items: torch.Tensor) -> list[tuple[int, int, int]]:
        """``(first row, last row, columns)`` per chunk of support rows: every row at full length,
        or (``trim_padding``) chunks of ``chunk_rows`` rows cut to their longest row over the
        meta-batch ``[T, S, L]``; all-padding chunks are dropped."""
        n_rows, length = support_items.shape[-2:]
        if not self.config.trim_padding:
            return [(0, n_rows, length)]
        real = (support_items != PAD).sum(-1).reshape(-1, n_rows).amax(0).tolist()  # [S]
        step = self.config.chunk_rows
        chunks = [(r, min(r + step, n_rows), max(real[r:r + step]))
                  for r in range(0, n_rows, step)]
        return [chunk for chunk in chunks if chunk[2] > 0]

    def _query_loss(self, params, items, ratings):
        """Squared error on the target (last position) of every query suffix, and the predictions
        (in rating units)."""
        pred = self._predict(params, items)[:, -1]
        return ((pred - ratings[:, -1] / self.scale) ** 2).mean(), pred * self.scale

    def _adapt(self, params, lrs, state, s_items, s_ratings, q_items, q_ratings, chunks,
               create_graph, every_step):
        """The inner loop of one task, ``theta^{s+1} = theta^s - alpha_s * grad L_support``
        (`02_melo`, section 3): query losses after every step ``[S]`` (after the last one only
        ``[1]`` unless ``every_step``) and the final predictions for its query rows ``[Q]``."""
        losses, last = [], self.config.inner_steps - 1
        for step in range(self.config.inner_steps):
            grads = grad(self._support_loss)(params, state, s_items, s_ratings, step, chunks)
            if not create_graph:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: p - lrs[k][step] * grads[k] for k, p in params.items()}
            if every_step or step == last:
                loss, pred = self._query_loss(params, q_items, q_ratings)
                losses.append(loss)
        return torch.stack(losses), pred

    # ------------------------------------------------------------------ a meta-batch
    def adapt(self, tasks: MeloTasks, create_graph: bool, every_step: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """All tasks at once: query losses ``[T, S]`` (``[T, 1]``, after the last step, unless
        ``every_step``: the multi-step loss needs them all, prediction only the last) and final
        query predictions ``[T, Q]``."""
        # every task gets its own (expanded, not copied) view of θ, so that every inner step,
        # the first included, runs the same batched-weight code path (the GRUs' fused kernel has
        # no vmap rule at all: under MAML they run `sequential.unrolled_gru`)
        params = {k: p.expand(len(tasks), *p.shape) for k, p in self.model.named_parameters()}
        state = self.inner_loss.task_state(tasks.support_items, tasks.support_ratings)
        batched = vmap(self._adapt, in_dims=(0, None, 0, 0, 0, 0, 0, None, None, None),
                       randomness="different")
        with math_attention():
            return batched(params, self.inner_lrs(), state, tasks.support_items,
                           tasks.support_ratings, tasks.query_items, tasks.query_ratings,
                           self.support_chunks(tasks.support_items), create_graph, every_step)

    def step_weights(self) -> torch.Tensor:
        c = self.config
        return multi_step_weights(c.inner_steps, self.iteration, c.multi_step_iterations)

    def second_order(self) -> bool:
        return self.config.second_order and self.iteration >= self.config.first_order_iterations

    def loss(self, tasks: MeloTasks) -> torch.Tensor:
        """The meta-training objective: mean over tasks of ``Σ_s v_s L_query(θ_i^{s+1})``; in
        training mode each call is one outer iteration of the schedules."""
        losses, _ = self.adapt(tasks, create_graph=self.second_order())
        loss = (losses * self.step_weights().to(losses.device)).sum(1).mean()
        if self.training:
            self.iteration += 1
        return loss

    def predict(self, tasks: MeloTasks) -> torch.Tensor:
        """Adapt on each support set (no second-order graph), then predict each task's target
        rating from its first query row: ``[T]`` in rating units."""
        with torch.no_grad():
            _, pred = self.adapt(tasks, create_graph=False, every_step=False)
        return pred[:, 0]


def math_attention():
    """``scaled_dot_product_attention``'s fused CPU kernel has no double backward and no vmap
    batching rule (vmap would loop over the tasks): MAML runs attention (SASRec, BERT4Rec) on the
    math kernel."""
    return sdpa_kernel(SDPBackend.MATH)


def query_losses_loop(maml: MAML, tasks: MeloTasks, create_graph: bool = True) -> torch.Tensor:
    """The authors' shape: tasks adapted one by one, each inner step a ``torch.autograd.grad``
    (``create_graph`` for second order), every support row at full length as theirs.
    Query losses ``[T, S]``; the reference for `MAML.adapt`."""
    names = [name for name, _ in maml.model.named_parameters()]
    lrs = maml.inner_lrs()
    state = maml.inner_loss.task_state(tasks.support_items, tasks.support_ratings)
    all_losses = []
    with math_attention():
        for t in range(len(tasks)):
            all_losses.append(_task_losses_loop(maml, tasks, state, lrs, names, t, create_graph))
    return torch.stack(all_losses)


def _task_losses_loop(maml, tasks, state, lrs, names, t, create_graph) -> torch.Tensor:
    params = dict(maml.model.named_parameters())
    losses = []
    for step in range(maml.config.inner_steps):
        support = maml._support_loss(params, state[t], tasks.support_items[t],
                                     tasks.support_ratings[t], step,
                                     [(0, *tasks.support_items.shape[1:])])
        grads = torch.autograd.grad(support, list(params.values()), create_graph=create_graph)
        params = {k: params[k] - lrs[k][step] * g for k, g in zip(names, grads)}
        losses.append(maml._query_loss(params, tasks.query_items[t], tasks.query_ratings[t])[0])
    return torch.stack(losses)


def _key(name: str) -> str:
    return name.replace(".", "__")
