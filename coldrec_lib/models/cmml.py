"""CMML (Feng et al., "CMML: Contextual Modulation Meta Learning for Cold-Start
Recommendation", CIKM 2021): no inner loop. A context vector read off the support pairs
modulates a pair recommender, fully feed-forward. Taught in `03_cmml`, section "CMML".

* context encoder (the paper's section 3.2): every support pair as ``[u; i; one-hot label]``
  (positives and their sampled negatives), either a per-pair MLP and a masked mean
  (``encoder="mean"``) or a GRU whose last state is the context (``"gru"``): ``c`` of size 2d;
* hybrid context generator (3.3): ``z`` from ``c`` and the query pair ``x = [u; i]``:
  ``x * c`` (``"product"``), a linear map of ``[x; c]`` (``"concat"``) or ``c`` alone
  (``"context"``);
* modulation of the backbone MLP ``2d -> 64 -> 64 -> 64 -> 1`` by a hypernetwork of ``z``
  (3.4), pluggable (`MODULATIONS`): FiLM ``x * gamma + beta`` after every hidden layer with the
  raw gamma of the original (``"film"``) or ``1 + gamma`` (``"film1"``: starts as the identity),
  sigmoid gating ``x * sigmoid(o)`` (``"gating"``), generation of the last layer's weights
  (``"final"``) and soft modularisation (``"softm"``: 3 layers of 4 modules of width 32, routed
  per pair by softmaxed matrices computed from ``z``).

Every scenario of a batch is one slice of the same tensors (``c`` broadcasts over the scenario's
pairs): no per-scenario loop. Defects of the original avoided: soft modularisation works for a
single scenario too (the original's raised NameError), no ``.cuda(0)``, no learning-rate
schedule stepped on the test metric.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.scenarios import PretrainedEmbeddings, ScenarioBatch
from .scenario import PairMLP, ScenarioRecommender


@dataclass
class CMMLConfig:
    hidden: tuple[int, ...] = (64, 64, 64)
    encoder: str = "mean"          # "mean" or "gru"
    generator: str = "product"     # "product", "concat" or "context"
    modulation: str = "film1"      # a key of MODULATIONS
    modules: int = 4               # soft modularisation: modules per layer
    module_width: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5


# ---------------------------------------------------------------------- context
class ContextEncoder(nn.Module):
    """Support pairs ``[N, P, 2d + 2]`` (masked) -> context ``c [N, 2d]``."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in ("mean", "gru"):
            raise ValueError(f"encoder must be 'mean' or 'gru'; got {kind!r}")
        self.kind = kind
        if kind == "mean":
            self.pair = nn.Sequential(nn.Linear(2 * dim + 2, 2 * dim), nn.ReLU(),
                                      nn.Linear(2 * dim, 2 * dim))
        else:
            self.gru = nn.GRU(2 * dim + 2, 2 * dim, batch_first=True)

    def forward(self, pairs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """CMML's context ``c`` (`03_cmml`, section 5): the masked mean of per-pair encodings
        (``"mean"``) or the last state of a GRU over the support pairs (``"gru"``)."""
        if self.kind == "mean":
            weights = mask.unsqueeze(-1).to(pairs.dtype)
            return (self.pair(pairs) * weights).sum(1) / weights.sum(1).clamp(min=1)
        lengths = mask.sum(1).clamp(min=1).cpu()  # valid pairs come first
        packed = nn.utils.rnn.pack_padded_sequence(pairs, lengths, batch_first=True,
                                                   enforce_sorted=False)
        return self.gru(packed)[1][0]


def support_pairs(model: ScenarioRecommender, batch: ScenarioBatch):
    """Each support positive followed by its R negatives, as ``[u; i; one-hot label]``:
    ``[N, S * (1 + R), 2d + 2]`` and the mask (valid pairs first)."""
    n, s, r = batch.support_negatives.shape
    items = torch.cat([batch.support_items.unsqueeze(-1), batch.support_negatives], -1)
    users = batch.support_users.unsqueeze(-1).expand(n, s, 1 + r)
    labels = torch.zeros(n, s, 1 + r, 2, device=items.device)
    labels[..., 0, 1] = 1.0  # positive
    labels[..., 1:, 0] = 1.0  # negative
    u, i = model.embed(users, items)
    pairs = torch.cat([u, i, labels], -1).view(n, s * (1 + r), -1)
    return pairs, batch.support_mask.unsqueeze(-1).expand(n, s, 1 + r).reshape(n, -1)


class Decomposed:
    """A hypernetwork output over every (user, item) pair of a grid, kept as its user part
    ``[N, U, 1, K]`` and item part ``[N, 1, C, K]``. All three generators are linear in
    ``x = [u; i]``, so ``hyper(z)`` splits into a user and an item term: the linear maps run on
    U + C rows instead of U x C, and a slice is summed (``[N, U * C, k]``) only when a layer
    needs it."""

    def __init__(self, user: torch.Tensor, item: torch.Tensor):
        self.user, self.item = user, item

    def __getitem__(self, index) -> torch.Tensor:
        return (self.user[index] + self.item[index]).flatten(1, 2)

    def split(self, sizes: list[int], dim: int = -1) -> list["Decomposed"]:
        """Per-layer parts, made contiguous (U + C rows): a broadcast sum of strided slices can
        run several times slower than of contiguous ones."""
        return [Decomposed(u.contiguous(), i.contiguous())
                for u, i in zip(self.user.split(sizes, dim), self.item.split(sizes, dim))]


def dense(codes) -> torch.Tensor:
    """``[N, P, k]`` codes, summing a `Decomposed` grid's halves."""
    return codes[...] if isinstance(codes, Decomposed) else codes


class HybridContext(nn.Module):
    """Applies a linear map ``linear`` (a hypernetwork) to the hybrid context ``z`` of
    ``c [N, 2d]`` and the scored pairs (user embeddings ``[N, U, d]``, item embeddings
    ``[N, C, d]``): ``z = [u; i] * c`` (``"product"``), ``mix([u; i; c])`` (``"concat"``) or
    ``c`` (``"context"``). Returns ``[N, P, K]`` for aligned pairs, `Decomposed` for a grid
    (``[N, 1, K]`` for ``"context"``, which does not depend on the pair)."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in ("product", "concat", "context"):
            raise ValueError(f"generator must be 'product', 'concat' or 'context'; got {kind!r}")
        self.kind, self.dim = kind, dim
        if kind == "concat":
            self.mix = nn.Linear(4 * dim, 2 * dim)

    def forward(self, linear: nn.Linear, context, users, items, grid: bool):
        c = context.unsqueeze(1)
        if self.kind == "context":
            return linear(c)
        d = self.dim
        if self.kind == "product":  # [u; i] * c = [u * c_u; 0] + [0; i * c_i]
            from_user = F.linear(users * c[..., :d], linear.weight[:, :d])
            from_item = F.linear(items * c[..., d:], linear.weight[:, d:], linear.bias)
        else:  # mix([u; i; c]) = M_u u + (M_i i + M_c c + m), then the linear map
            m = self.mix.weight
            from_user = F.linear(F.linear(users, m[:, :d]), linear.weight)
            from_item = linear(F.linear(items, m[:, d:2 * d])
                               + F.linear(c, m[:, 2 * d:], self.mix.bias))
        if grid:
            return Decomposed(from_user.unsqueeze(2), from_item.unsqueeze(1))
        return from_user + from_item


# ---------------------------------------------------------------------- modulations
class ModulatedMLP(nn.Module):
    """The backbone `PairMLP` and a hypernetwork ``z -> per-layer modulation``; subclasses
    say what the hypernetwork emits (``n_outputs``) and how it acts (``modulate``/``output``)."""

    per_unit = 0  # hypernetwork outputs per hidden unit of every layer (``modulate``)

    def __init__(self, dim: int, config: CMMLConfig):
        super().__init__()
        self.backbone = PairMLP(dim, config.hidden)
        self.hidden_sizes = config.hidden
        self.hyper = nn.Linear(2 * dim, self.n_outputs())
        nn.init.normal_(self.hyper.weight, std=0.01)
        nn.init.zeros_(self.hyper.bias)

    def n_outputs(self) -> int:
        raise NotImplementedError

    def modulate(self, codes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A hidden layer's output ``x`` changed by that layer's ``per_unit * width`` codes."""
        return x

    def output(self, codes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.output(self.backbone.parameters_list(), x)

    def forward(self, generator: HybridContext, context, users, items, grid: bool) -> torch.Tensor:
        codes = generator(self.hyper, context, users, items, grid)  # [N, P or 1, n_outputs]
        params = self.backbone.parameters_list()
        modulate = None
        if self.per_unit:  # split once: the gradient is one concatenation, not a zero-filled
            # copy of all the codes per sliced layer
            layers = codes.split([self.per_unit * h for h in self.hidden_sizes], -1)
            modulate = lambda layer, x: self.modulate(layers[layer], x)  # noqa: E731
        x = self.backbone.hidden(params, users, items, grid, modulate)
        return self.output(codes, x)


class FiLM(ModulatedMLP):
    """``x * gamma + beta`` after every hidden layer; raw gamma as the original."""

    one_plus = False
    per_unit = 2

    def n_outputs(self):
        return 2 * sum(self.hidden_sizes)

    def modulate(self, codes, x):
        """FiLM (`03_cmml`, section 5): ``h * gamma + beta``, or ``h * (1 + gamma) + beta``."""
        gamma, beta = dense(codes).chunk(2, -1)
        return x * (1 + gamma if self.one_plus else gamma) + beta


class FiLMOnePlus(FiLM):
    """``x * (1 + gamma) + beta``: the identity when the hypernetwork outputs zero."""

    one_plus = True


class Gating(ModulatedMLP):
    """``x * sigmoid(o)`` after every hidden layer."""

    per_unit = 1

    def n_outputs(self):
        return sum(self.hidden_sizes)

    def modulate(self, codes, x):
        return x * torch.sigmoid(dense(codes))


class FinalLayer(ModulatedMLP):
    """The hypernetwork emits the last layer's weights and bias (added to shared ones)."""

    def n_outputs(self):
        return self.hidden_sizes[-1] + 1

    def output(self, codes, x):
        weight, bias = codes[..., :-1], codes[..., -1]
        return super().output(codes, x) + (x * weight).sum(-1) + bias


class SoftModular(nn.Module):
    """Soft modularisation (Yang et al. 2020): a first layer to ``modules x width``, then
    ``layers`` layers in which module j reads ``sum_k p_jk x_k`` with routing probabilities
    ``p = softmax_k(routing(z))`` per pair, then a linear output over all modules."""

    def __init__(self, dim: int, config: CMMLConfig, layers: int = 3):
        super().__init__()
        m, w = config.modules, config.module_width
        self.m, self.w, self.layers = m, w, layers
        self.first = PairMLP(dim, (m * w,))
        self.weights = nn.Parameter(torch.randn(layers, m, w, w) / w ** 0.5)
        self.biases = nn.Parameter(torch.zeros(layers, m, w))
        self.routing = nn.Linear(2 * dim, layers * m * m)
        self.out = nn.Linear(m * w, 1)

    def forward(self, generator: HybridContext, context, users, items, grid: bool) -> torch.Tensor:
        """Scores of the pairs, each layer's modules mixed by routing probabilities computed from
        ``z`` (`03_cmml`, section 5)."""
        x = F.relu(self.first.hidden(self.first.parameters_list(), users, items, grid))
        n, p = x.shape[:2]
        x = x.view(n, p, self.m, self.w)
        routes = generator(self.routing, context, users, items, grid)[..., :]
        routes = routes.view(n, -1, self.layers, self.m, self.m).softmax(-1)
        for layer in range(self.layers):
            mixed = routes[:, :, layer] @ x  # [N, P, m, m] @ [N, P, m, w]
            x = F.relu(torch.einsum("npmw,mwv->npmv", mixed, self.weights[layer])
                       + self.biases[layer])
        return self.out(x.flatten(2)).squeeze(-1)


MODULATIONS = {"film": FiLM, "film1": FiLMOnePlus, "gating": Gating, "final": FinalLayer,
               "softm": SoftModular}


# ---------------------------------------------------------------------- the model
class CMML(ScenarioRecommender):
    def __init__(self, embeddings: PretrainedEmbeddings, config: CMMLConfig = CMMLConfig()):
        super().__init__(embeddings)
        if config.modulation not in MODULATIONS:
            raise ValueError(f"modulation must be one of {sorted(MODULATIONS)}; "
                             f"got {config.modulation!r}")
        self.config = config
        self.encoder = ContextEncoder(self.dim, config.encoder)
        self.generator = HybridContext(self.dim, config.generator)
        self.scorer = MODULATIONS[config.modulation](self.dim, config)

    def adapt(self, batch: ScenarioBatch) -> torch.Tensor:
        """The context vector of every scenario ``[N, 2d]``: one forward pass, no inner loop."""
        return self.encoder(*support_pairs(self, batch))

    def pair_scores(self, context, users, items, grid=False):
        u, i = self.embed(users, items)
        scores = self.scorer(self.generator, context, u, i, grid)
        return scores.view(u.shape[0], u.shape[1], i.shape[1]) if grid else scores
