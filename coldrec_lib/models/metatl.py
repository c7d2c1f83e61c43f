"""MetaTL (Wang, Ding & Caverlee, SIGIR 2021): cold-start users as few-shot transition tasks.

A user is a *task*. Their K initial items give K-1 support transitions ``h -> t``; the query is
the transition from the K-th item to the next one. Taught in `01_metatl`, section "The model":

* relation learner (eq. 1-2 of the paper): every support transition ``concat(e_h, e_t)`` goes
  through an MLP, and the mean over the task's transitions is the user's transition vector
  ``r_u``;
* TransE score (eq. 3): ``s(h -> t | r) = -|| e_h + r - e_t ||_2``. The paper writes the squared
  norm, the authors' code the plain norm; the default is the plain L2 norm (with a tiny epsilon
  inside the square root so its gradient exists at distance 0), ``squared_distance=True`` gives
  the paper's. With the plain norm the inner gradient is a difference of unit vectors, which
  vanishes when ``||r||`` is large against the item embeddings (`01_metatl`, section 6);
* margin loss (eq. 4): ``L = mean_j max(0, margin - s(h_j -> t_j) + s(h_j -> t_j^-))`` with one
  sampled negative tail per positive;
* one inner step (eq. 5): ``r'_u = r_u - beta * dL_support / dr_u``. Only ``r_u`` is adapted,
  so the per-task gradients of a whole batch come from one ``autograd.grad`` of the *sum* of the
  per-task losses (task n's loss depends on ``r_n`` only);
* outer loss (eq. 6): the same margin loss on the query transitions with ``r'_u``.

Defects of the original code fixed here (see ``../shared/papers/metatl.md`` and `01_metatl`,
section "What we fixed"):

3. **per-task support loss** – the original averaged the support loss over the whole batch, so
   each task's inner gradient was divided by the batch size (effective beta 1024x smaller in
   training than at evaluation). `support_loss_per_task` averages over each task's own
   transitions only.
4. **meta-gradient without the support loss** – the original called ``backward`` on the support
   loss and never cleared the gradients, so the support loss leaked into the parameter update.
   `adapt` uses ``torch.autograd.grad``, which never writes ``.grad``.
6. **no BatchNorm over transition positions** – ``BatchNorm1d(K - 1)`` fixed K in the weights. The
   relation MLP acts on each transition alone and the mean is masked, so any K >= 2 (and padded
   supports of different lengths) use the same weights.
7. **no cache of adapted relations** – the original kept a dict of graph-attached tensors that
   grew every batch; nothing is cached here.

Defects 1, 2 (sampling), 5 (``model.eval()`` never undone), 8 (no validation-based selection)
and 9 (unseeded split) are fixed by `coldrec_lib.data.TaskSampler`, `coldrec_lib.evaluation`,
`coldrec_lib.training.fit` and the seeded splits of `coldrec_lib.experiments.metatl.make_split`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import PAD
from ..data.sequences import TaskSampler
from ..data.splits import EvalBatch
from .base import Recommender


@dataclass
class MetaTLConfig:
    dim: int = 100                 # item embedding size (paper: 100)
    hidden: tuple[int, ...] = (500, 200)  # relation MLP hidden sizes (paper: 500, 200)
    dropout: float = 0.5
    beta: float = 5.0              # inner step size (paper: 5)
    margin: float = 1.0            # margin of the ranking loss (paper: 1)
    squared_distance: bool = False  # score -||h + r - t||^2 (paper) instead of -||h + r - t||
    inner_step: bool = True        # False = the ablation "MetaTL without its inner step"
    second_order: bool = False     # differentiate through the inner gradient (full MAML)
    lr: float = 1e-3
    batch_size: int = 1024         # tasks per batch (paper: 1024)
    eval_seed: int = 0             # seeds the support negatives of the inner step at evaluation


@dataclass
class TaskBatch:
    """K-shot tasks with their sampled negatives, ready for `MetaTL.loss`."""

    support: torch.Tensor            # [N, K] items, PAD (0) where a task has fewer than K
    query: torch.Tensor              # [N, Q] the items that follow the support
    support_negatives: torch.Tensor  # [N, K-1] one negative tail per support transition
    query_negatives: torch.Tensor    # [N, Q] one negative tail per query transition

    def to(self, device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in (self.support, self.query,
                                                  self.support_negatives, self.query_negatives)))


def transitions(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Consecutive pairs of a left- or right-padded item matrix ``[N, L]``: heads ``[N, L-1]``,
    tails ``[N, L-1]`` and the mask of pairs where neither item is padding."""
    heads, tails = items[:, :-1], items[:, 1:]
    return heads, tails, (heads != PAD) & (tails != PAD)


def sample_negatives(n_items: int, shape: tuple[int, ...], exclude: torch.Tensor,
                     generator: torch.Generator | None = None, rounds: int = 5) -> torch.Tensor:
    """Uniform item ids in ``1..n_items`` of ``shape = (N, M)``, redrawn (up to ``rounds`` times,
    all rows at once) where they hit an item of that row of ``exclude [N, L]``."""
    device = exclude.device
    negatives = torch.randint(1, n_items + 1, shape, generator=generator)
    exclude = exclude.cpu()
    for _ in range(rounds):
        clash = (negatives.unsqueeze(-1) == exclude.unsqueeze(1)).any(-1)
        if not clash.any():
            break
        redraw = torch.randint(1, n_items + 1, shape, generator=generator)
        negatives = torch.where(clash, redraw, negatives)
    return negatives.to(device)


def task_batches(sampler: TaskSampler, n_items: int, batch_size: int, n_batches: int,
                 generator: torch.Generator, device="cpu") -> Iterator[TaskBatch]:
    """``n_batches`` batches of ``batch_size`` tasks (one "epoch" for `coldrec_lib.training.fit`),
    sampled by `TaskSampler` with tensor ops; negatives avoid the task's own items."""
    k = sampler.k
    for _ in range(n_batches):
        tasks = sampler.sample(batch_size, generator)
        window = torch.cat([tasks.support, tasks.query], 1)
        negatives = sample_negatives(n_items, (batch_size, k - 1 + sampler.n_query), window,
                                     generator)
        yield TaskBatch(tasks.support, tasks.query, negatives[:, :k - 1],
                        negatives[:, k - 1:]).to(device)


class FastDropout(nn.Module):
    """`nn.Dropout` with a cheaper mask: four 16-bit uniform integers from every 64-bit draw
    (``random_`` over the whole int64 range), kept where they are at least a threshold. Drawing the
    mask was a quarter of MetaTL's training step with ``bernoulli_`` and still an eighth with
    ``torch.rand`` (one float per element; ``torch.profiler`` on one thread). Same
    semantics: zero with probability ``p`` (rounded to a multiple of 2^-16; 0.5 is exact), scale
    the rest by ``1 / (1 - p)``; identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1); got {p}")
        self.p = p
        dropped = round(p * 2 ** 16)            # of the 2^16 values of a 16-bit draw
        self.threshold = dropped - 2 ** 15      # keep a signed 16-bit draw >= threshold
        self.scale = 2 ** 16 / (2 ** 16 - dropped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(self.scale)  # a float mask: 0 or 1 / (1 - p)


class RelationLearner(nn.Module):
    """Eq. 1-2: MLP over ``concat(e_h, e_t)`` of each transition, masked mean over a task's
    transitions. No normalisation over positions (defect 6), so K is free.

    The mean is taken before the last (linear) layer: ``mean_j(W x_j + b) = W mean_j(x_j) + b``,
    the same value with K-1 times less work in that layer."""

    def __init__(self, dim: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        sizes = (2 * dim, *hidden)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            # in place: the linear layer's backward does not need its output
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(inplace=True), FastDropout(dropout)]
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(sizes[-1], dim)
        for layer in [*self.hidden, self.output]:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, pairs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2 (`01_metatl`, section 3): the mean of the MLP over each transition's
        ``concat(e_h, e_t)``. ``pairs [N, T, 2d]``, ``mask [N, T]`` -> ``r [N, d]``."""
        n, t = mask.shape
        per_transition = self.hidden(pairs.reshape(n * t, -1)).view(n, t, -1)  # 2-D GEMMs
        weights = mask.to(per_transition.dtype).unsqueeze(-1)
        mean = (per_transition * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.output(mean)


class MetaTL(Recommender):
    min_history = 2  # K >= 2: a relation needs a pair of support items

    def __init__(self, n_items: int, config: MetaTLConfig = MetaTLConfig()):
        super().__init__()
        if n_items < 2:
            raise ValueError(f"MetaTL needs at least 2 items; got n_items={n_items}")
        self.n_items, self.config = n_items, config
        self.items = nn.Embedding(n_items + 1, config.dim)
        nn.init.xavier_uniform_(self.items.weight)
        self.relation = RelationLearner(config.dim, config.hidden, config.dropout)

    # ------------------------------------------------------------------ equations
    def transition_score(self, heads: torch.Tensor, relation: torch.Tensor,
                         tails: torch.Tensor) -> torch.Tensor:
        """Eq. 3, TransE: ``-|| e_h + r - e_t ||^2`` (``squared_distance``, the paper) or
        ``-|| e_h + r - e_t ||`` (the authors' code), over the last dimension."""
        return self._from_squared((heads + relation - tails).pow(2).sum(-1))

    def _from_squared(self, squared: torch.Tensor) -> torch.Tensor:
        """Score from a squared distance; the epsilon keeps the square root differentiable at 0."""
        if self.config.squared_distance:
            return -squared
        return -(squared.clamp(min=0) + 1e-12).sqrt()

    def support_loss_per_task(self, relation, heads, tails, negatives, mask) -> torch.Tensor:
        """Eq. 4 per task: the margin loss averaged over *that task's* valid transitions
        (defect 3: not over the batch). ``relation [N, d]``, the rest ``[N, T(, d)]`` -> ``[N]``."""
        r = relation.unsqueeze(1)
        positive = self.transition_score(heads, r, tails)
        negative = self.transition_score(heads, r, negatives)
        hinge = F.relu(self.config.margin - positive + negative) * mask
        return hinge.sum(1) / mask.sum(1).clamp(min=1)

    def adapt(self, relation, heads, tails, negatives, mask) -> torch.Tensor:
        """Eq. 5, one inner step for every task at once: ``r' = r - beta * dL_n/dr_n``.

        ``autograd.grad`` of the summed per-task losses gives each task its own gradient (task
        n's loss depends on ``r_n`` only) and leaves ``.grad`` untouched (defect 4). With
        ``second_order`` the step is differentiated through (``create_graph``)."""
        if not self.config.inner_step:
            return relation
        with torch.enable_grad():  # the evaluator runs under no_grad; the inner step needs grads
            if not relation.requires_grad:
                relation = relation.detach().requires_grad_(True)
            losses = self.support_loss_per_task(relation, heads, tails, negatives, mask)
            (gradient,) = torch.autograd.grad(losses.sum(), relation,
                                              create_graph=self.config.second_order and
                                              torch.is_grad_enabled() and self.training)
        return relation - self.config.beta * gradient

    # ------------------------------------------------------------------ tasks
    def adapted_relation(self, support: torch.Tensor, support_negatives: torch.Tensor
                         ) -> torch.Tensor:
        """The user's transition vector after the inner step: ``[N, d]`` from support ``[N, K]``
        (padded with PAD anywhere) and one negative tail per support transition ``[N, K-1]``."""
        return self.relations(support, support_negatives)[1]

    def relations(self, support: torch.Tensor, support_negatives: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(r, r')``, the transition vector before and after the inner step, ``[N, d]`` each.

        Each transition's ``concat(e_h, e_t)`` comes from one embedding lookup of the support's
        consecutive pairs (``unfold``): ``[N, K-1, 2, d]``, contiguous, so the relation MLP reads
        it as ``[N, K-1, 2d]`` without a copy and the scores read ``e_h``, ``e_t`` as views."""
        heads, tails, mask = transitions(support)
        if not mask.any(1).all():
            row = int((~mask.any(1)).nonzero()[0])
            raise ValueError(f"task {row} has no support transition (it needs at least 2 "
                             f"non-padding items); support row: {support[row].tolist()}")
        pairs = self.items(support.unfold(1, 2, 1))  # [N, K-1, 2, d]
        relation = self.relation(pairs.flatten(2), mask)
        e_heads, e_tails = pairs.unbind(2)
        return relation, self.adapt(relation, e_heads, e_tails, self.items(support_negatives),
                                    mask)

    def loss(self, batch: TaskBatch) -> torch.Tensor:
        """Eq. 6: margin loss of the query transitions under the adapted relation, averaged over
        the tasks of the batch."""
        if batch.support.shape[1] < 2:
            raise ValueError(f"MetaTL needs K >= 2 support items; got K={batch.support.shape[1]}")
        relation = self.adapted_relation(batch.support, batch.support_negatives)
        chain = torch.cat([batch.support[:, -1:], batch.query], 1)
        mask = transitions(chain)[2]
        items = self.items(chain)  # [N, Q+1, d]: heads and tails are views of one lookup
        return self.support_loss_per_task(relation, items[:, :-1], items[:, 1:],
                                          self.items(batch.query_negatives), mask).mean()

    # ------------------------------------------------------------------ scoring
    def eval_support_negatives(self, history: torch.Tensor) -> torch.Tensor:
        """Seeded negatives for the inner step at evaluation (same batch -> same negatives)."""
        generator = torch.Generator().manual_seed(self.config.eval_seed)
        return sample_negatives(self.n_items, (history.shape[0], history.shape[1] - 1), history,
                                generator)

    def _query(self, batch: EvalBatch) -> torch.Tensor:
        """``e_last + r'``: the point in item space the next item should be close to ``[B, d]``."""
        history = batch.history
        if history.shape[1] < 2:
            raise ValueError("MetaTL scores users from at least 2 history items (K >= 2); "
                             f"got a history of width {history.shape[1]}")
        relation = self.adapted_relation(history, self.eval_support_negatives(history))
        return self.items(history[:, -1]) + relation  # history is left-padded: last = newest

    def score(self, batch: EvalBatch) -> torch.Tensor:
        """Eq. 3 against every item: ``-|| e_last + r' - e_i ||`` -> ``[B, n_items + 1]``."""
        distance = torch.cdist(self._query(batch).unsqueeze(0), self.items.weight.unsqueeze(0))[0]
        return -distance.pow(2) if self.config.squared_distance else -distance

    def score_candidates(self, batch: EvalBatch, candidates: torch.Tensor) -> torch.Tensor:
        """Eq. 3 for given items ``[B, C]``, via ``||q - e||^2 = ||q||^2 - 2 q.e + ||e||^2`` with
        one batched product (no ``[B, C, d]`` difference tensor: 10,000 users x 101 candidates
        are scored in well under a second on one CPU thread, see ``benchmarks/metatl.py``)."""
        query = self._query(batch)
        dot = torch.bmm(self.items(candidates), query.unsqueeze(-1)).squeeze(-1)
        item_norms = self.items.weight.pow(2).sum(-1)[candidates]
        squared = query.pow(2).sum(-1, keepdim=True) - 2 * dot + item_norms
        return self._from_squared(squared.clamp(min=0))
