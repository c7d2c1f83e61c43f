"""What every scenario model shares (`03_cmml`, sections "Scenarios" and "Baselines"): frozen
pretrained embeddings, the pair recommender (an MLP on ``[u; i]``) applied with per-scenario
weights, the hinge loss, and the two simplest scenario models: first-order MAML (which, with no
inner step, is the global model) and support popularity.

A scenario model answers two questions for a batch of N scenarios:

* ``adapt(batch) -> state``: what it takes from each scenario's support pairs (adapted weights,
  a context vector, support counts);
* ``pair_scores(state, users, items, grid)``: scores of (user, item) pairs of each scenario,
  either aligned pairs (``users``, ``items`` both ``[N, P]`` -> ``[N, P]``) or every user against
  every item (``[N, U]`` x ``[N, C]`` -> ``[N, U, C]``, how the evaluator ranks candidates).

Training minimises the hinge loss (margin 1) of query positives against one sampled negative
each, averaged per scenario then over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.scenarios import PretrainedEmbeddings, ScenarioBatch
from .base import Recommender


def hinge(positive: torch.Tensor, negative: torch.Tensor, mask: torch.Tensor,
          margin: float = 1.0) -> torch.Tensor:
    """Per-scenario mean of ``max(0, margin - s+ + s-)`` (the loss of `03_cmml`, section 3):
    ``positive [N, P]``, ``negative [N, P]`` or ``[N, P, R]`` (R negatives per positive),
    ``mask [N, P]`` -> ``[N]``."""
    if negative.dim() == 3:
        positive = positive.unsqueeze(-1)
        mask = mask.unsqueeze(-1).expand_as(negative)
    loss = F.relu(margin - positive + negative) * mask
    return loss.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


def per_scenario(parameter: torch.Tensor, reference: torch.Tensor, n: int) -> torch.Tensor:
    """``parameter`` as ``[N, ...]``: shared weights (the shape of ``reference``) are expanded,
    per-scenario ones (one more dimension) returned as they are."""
    return parameter.expand(n, *parameter.shape) if parameter.dim() == reference.dim() else parameter


class PairMLP(nn.Module):
    """The recommender every method shares: ``[u; i] -> hidden -> ... -> 1`` with ReLU, applied
    with given weights (shared or one set per scenario, see `per_scenario`). The first layer is
    split into its user and item halves, so scoring U users x C items costs ``(U + C)`` products,
    not ``U * C``."""

    def __init__(self, dim: int, hidden: tuple[int, ...]):
        super().__init__()
        sizes = (2 * dim, *hidden, 1)
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(a, b))
                                         for a, b in zip(sizes[:-1], sizes[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(b)) for b in sizes[1:]])
        for weight in self.weights:
            nn.init.kaiming_uniform_(weight.T, a=5 ** 0.5)  # nn.Linear's initialisation
        self.dim = dim

    def parameters_list(self) -> list[torch.Tensor]:
        """``[W_0, b_0, W_1, b_1, ...]``, the order ``forward`` expects."""
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def hidden(self, params, users, items, grid: bool, modulate=None) -> torch.Tensor:
        """The last hidden layer ``[N, P, h]`` (``P = U * C`` when ``grid``). ``modulate(l, x)``
        (CMML) may change the output of hidden layer ``l`` after its activation."""
        n = users.shape[0]
        params = [per_scenario(p, ref, n) for p, ref in zip(params, self.parameters_list())]
        w0, b0 = params[0], params[1]
        d = users.shape[-1]
        from_user = torch.bmm(users, w0[:, :d])                    # [N, U, h]
        from_item = torch.baddbmm(b0.unsqueeze(1), items, w0[:, d:])  # [N, C, h]
        if grid:
            x = (from_user.unsqueeze(2) + from_item.unsqueeze(1)).flatten(1, 2)
        else:
            x = from_user + from_item
        n_hidden = len(params) // 2 - 1
        for layer in range(n_hidden):
            x = F.relu(x)
            if modulate is not None:
                x = modulate(layer, x)
            if layer + 1 < n_hidden:
                w, b = params[2 * layer + 2], params[2 * layer + 3]
                x = torch.baddbmm(b.unsqueeze(1), x, w)
        return x

    def output(self, params, x: torch.Tensor) -> torch.Tensor:
        """The last (linear) layer: ``[N, P, h] -> [N, P]``."""
        w = per_scenario(params[-2], self.weights[-1], x.shape[0])
        b = per_scenario(params[-1], self.biases[-1], x.shape[0])
        return torch.baddbmm(b.unsqueeze(1), x, w).squeeze(-1)

    def forward(self, params, users, items, grid: bool = False) -> torch.Tensor:
        scores = self.output(params, self.hidden(params, users, items, grid))
        return scores.view(users.shape[0], users.shape[1], items.shape[1]) if grid else scores


class ScenarioRecommender(Recommender):
    """Base of the scenario models: frozen embeddings (buffers) and the training loss."""

    def __init__(self, embeddings: PretrainedEmbeddings):
        super().__init__()
        self.register_buffer("user_embeddings", embeddings.users.clone())
        self.register_buffer("item_embeddings", embeddings.items.clone())

    @property
    def dim(self) -> int:
        return self.user_embeddings.shape[1]

    def embed(self, users: torch.Tensor, items: torch.Tensor):
        return self.user_embeddings[users], self.item_embeddings[items]

    def adapt(self, batch: ScenarioBatch):
        raise NotImplementedError

    def pair_scores(self, state, users: torch.Tensor, items: torch.Tensor,
                    grid: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def support_loss(self, state, batch: ScenarioBatch) -> torch.Tensor:
        """Hinge loss of every support positive against its R negatives, per scenario ``[N]``."""
        n, s, r = batch.support_negatives.shape
        positive = self.pair_scores(state, batch.support_users, batch.support_items)
        users = batch.support_users.unsqueeze(-1).expand(n, s, r).reshape(n, s * r)
        negative = self.pair_scores(state, users, batch.support_negatives.reshape(n, s * r))
        return hinge(positive, negative.view(n, s, r), batch.support_mask)

    def query_loss(self, state, batch: ScenarioBatch) -> torch.Tensor:
        """Hinge loss of the query positives against their negatives, per scenario ``[N]``."""
        positive = self.pair_scores(state, batch.query_users, batch.query_items)
        negative = self.pair_scores(state, batch.query_users, batch.query_negatives)
        return hinge(positive, negative, batch.query_mask)

    def loss(self, batch: ScenarioBatch) -> torch.Tensor:
        return self.query_loss(self.adapt(batch), batch).mean()

    def score(self, batch):
        raise NotImplementedError(f"{type(self).__name__} ranks the candidates of a scenario "
                                  "after reading its support: use ScenarioEvaluator")


class WeightAdaptingRecommender(ScenarioRecommender):
    """A scenario model whose state is a set of `PairMLP` weights per scenario (MAML, s2Meta)."""

    def __init__(self, embeddings: PretrainedEmbeddings, hidden: tuple[int, ...]):
        super().__init__(embeddings)
        self.backbone = PairMLP(self.dim, hidden)

    def initial_params(self, n: int) -> list[torch.Tensor]:
        """The shared (meta-learned) initialisation, expanded to ``[N, ...]``."""
        return [p.expand(n, *p.shape) for p in self.backbone.parameters_list()]

    def pair_scores(self, params, users, items, grid=False):
        users, items = self.embed(users, items)
        return self.backbone(params, users, items, grid)


# ---------------------------------------------------------------------- first-order MAML
@dataclass
class MAMLConfig:
    hidden: tuple[int, ...] = (64, 64, 64)
    inner_steps: int = 5       # 0 = the global model: one MLP for every scenario, no adaptation
    inner_lr: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-5


class FirstOrderMAML(WeightAdaptingRecommender):
    """MAML (Finn et al. 2017), first order: ``theta'_n = theta - alpha * grad L_support_n``
    repeated ``inner_steps`` times per scenario, the query loss at ``theta'_n`` trains
    ``theta``; the inner gradient is a constant (no second derivatives). Every scenario of a
    batch gets its own weights: ``theta`` is expanded to ``[N, ...]`` and the gradient of the
    *sum* of per-scenario support losses with respect to it is each scenario's own gradient."""

    def __init__(self, embeddings: PretrainedEmbeddings, config: MAMLConfig = MAMLConfig()):
        super().__init__(embeddings, config.hidden)
        self.config = config

    def adapt(self, batch: ScenarioBatch) -> list[torch.Tensor]:
        """First-order MAML's inner loop (`03_cmml`, section 3): ``inner_steps`` steps
        ``theta' = theta - alpha * grad L_support`` per scenario."""
        params = self.initial_params(len(batch))
        for _ in range(self.config.inner_steps):
            gradients, _ = inner_gradients(self, params, batch)
            params = [p - self.config.inner_lr * g for p, g in zip(params, gradients)]
        return params


def inner_gradients(model: ScenarioRecommender, params: list[torch.Tensor],
                    batch: ScenarioBatch) -> tuple[list[torch.Tensor], torch.Tensor]:
    """First-order per-scenario gradients of the support loss (constants: detached), also under
    the evaluator's ``no_grad``. Returns the gradients and the support losses ``[N]``."""
    if not torch.is_grad_enabled():  # evaluation: fresh leaves (views made under no_grad
        params = [p.detach().requires_grad_(True) for p in params]  # are in no graph)
    with torch.enable_grad():
        inputs = params
        losses = model.support_loss(inputs, batch)
        gradients = torch.autograd.grad(losses.sum(), inputs)
    return [g.detach() for g in gradients], losses.detach()


# ---------------------------------------------------------------------- support popularity
class SupportPopularity(ScenarioRecommender):
    """Each candidate scored by how many support pairs of the scenario name it; ties broken by
    the item's popularity in the training scenarios (a fraction below 1, so it never outranks
    one more support pair). Nothing is trained."""

    def __init__(self, embeddings: PretrainedEmbeddings, train_pairs_items: torch.Tensor):
        super().__init__(embeddings)
        counts = torch.bincount(train_pairs_items, minlength=len(embeddings.items)).float()
        self.register_buffer("tie_break", counts / (counts.max() + 1))

    def adapt(self, batch: ScenarioBatch) -> torch.Tensor:
        counts = torch.zeros(len(batch), len(self.tie_break), device=self.tie_break.device)
        counts.scatter_add_(1, batch.support_items, batch.support_mask.float())
        return counts + self.tie_break

    def pair_scores(self, counts, users, items, grid=False):
        scores = counts.gather(1, items)
        return scores.unsqueeze(1).expand(-1, users.shape[1], -1) if grid else scores
