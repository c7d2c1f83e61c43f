"""RaCT (Lobel, Li, Gao, Carin. *Towards Amortized Ranking-Critical Training for Collaborative
Filtering*, ICLR 2020): a Mult-VAE actor fine-tuned against a learned critic of NDCG@100. Taught
in `04_ract`, sections "Stage 1", "The critic" and "Stage 3".

Training rows are split by the actor's own input dropout: the kept items ``x * m`` are the input,
the dropped ones ``x * (1 - m)`` are held out. For each user the critic reads three features
(section 3.2 of the paper)

    [ |kept items|,  |held-out items|,  NLL = -sum_i x_i log softmax(f(z_u))_i ]

and regresses the NDCG@100 of the actor's ranking of the held-out items (kept items excluded).
As in the authors' code (samlobel/RaCT_CF, ``utils/models.py``: ``actor_error_mask =
batch_of_users``) the NLL runs over the user's whole row ``x``; ``CriticConfig(nll_items=
"held-out")`` sums it over the held-out items only. The features depend on the actor only through
the NLL, so maximising the critic's output re-weights the likelihood gradient user by user.

Stages (`RaCTTrainer`), each writing a checkpoint:

1. actor pre-training on the annealed ELBO (best epoch on the validation ``metric``,
   NDCG@100 by default);
2. critic pre-training on the frozen actor, MSE to the true NDCG, trained to convergence: at
   least ``critic_min_epochs`` epochs, then until its validation R^2 has not risen by more than
   ``critic_min_delta`` for ``patience`` epochs; the last critic is kept (as the authors, who train
   it a fixed 50 epochs). Its BatchNorm statistics are the cumulative average over the stage's
   batches, frozen at its end;
3. actor-critic: the actor maximises the critic's output (no KL), while the critic keeps
   training on its MSE in the same step (best epoch on the validation ``metric``; the stage-2
   weights are kept when no epoch beats them; ``finetune_keep="last"`` keeps the last epoch
   instead). `ActorCriticMonitor` records, epoch by epoch, the critic's predicted NDCG beside the
   true NDCG of the actor's ranking: is the actor gaming the critic?
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data.splits import EvalSet
from ..evaluation import EvalResult, eval_mode
from ..metrics import top_k_ndcg
from ..training import (FitResult, fingerprint, fit, load_checkpoint, save_checkpoint,
                        seed_everything)
from .multvae import (MultVAE, MultVAEConfig, UserRows, binary_rows, multinomial_nll,
                      user_batches, weight_penalty)

FEATURES = ("items in input", "held-out items", "actor NLL")
NLL_ITEMS = ("all", "held-out")  # the items the NLL feature sums over
FINETUNE_KEEP = ("best", "last")  # which stage-3 epoch is kept


# ---------------------------------------------------------------------- critic
@dataclass
class CriticConfig:
    hidden_dims: tuple[int, ...] = (100, 100, 10)
    lr: float = 1e-4
    l2: float = 1e-6  # weight of sum(W^2) over the critic's weight matrices
    k: int = 100      # the critic learns NDCG@k
    nll_items: str = "all"  # NLL feature over the whole row (authors) or the held-out items only

    def __post_init__(self):
        if self.nll_items not in NLL_ITEMS:
            raise ValueError(f"nll_items must be one of {NLL_ITEMS}; got {self.nll_items!r}")
        self.hidden_dims = tuple(self.hidden_dims)


class Critic(nn.Module):
    """BatchNorm over the three features, then an MLP ``3 -> 100 -> 100 -> 10 -> 1`` (ReLU) and
    a sigmoid: a predicted NDCG in (0, 1). The BatchNorm's running mean and variance are the
    cumulative average over all training batches (``momentum=None``), not an exponential one.
    After `freeze_feature_statistics` it uses them, and no longer updates them, even in training
    mode."""

    def __init__(self, config: CriticConfig = CriticConfig()):
        super().__init__()
        self.config = config
        self.norm = nn.BatchNorm1d(len(FEATURES), momentum=None)
        dims = (len(FEATURES), *config.hidden_dims, 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.register_buffer("stats_frozen", torch.zeros((), dtype=torch.bool))

    def freeze_feature_statistics(self) -> None:
        self.stats_frozen.fill_(True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != len(FEATURES):
            raise ValueError(f"the critic expects features [B, {len(FEATURES)}] "
                             f"({', '.join(FEATURES)}); got {tuple(features.shape)}")
        norm = self.norm
        if self.training and not bool(self.stats_frozen):
            h = norm(features)  # batch statistics; the running ones accumulate
        else:
            h = F.batch_norm(features, norm.running_mean, norm.running_var, norm.weight,
                             norm.bias, training=False, eps=norm.eps)
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        return torch.sigmoid(self.layers[-1](h)).squeeze(1)


def critic_inputs(actor: MultVAE, x: torch.Tensor, keep_mask: torch.Tensor, k: int = 100,
                  nll_items: str = "all"):
    """The critic's features ``[B, 3]`` and its target, NDCG@k of the actor's ranking of the
    held-out items ``[B]`` (batched in torch, no gradient). The NLL runs over the whole row
    (``nll_items="all"``, the authors' code) or the held-out items. Gradient reaches the actor
    through the NLL feature only."""
    kept, held_out = x * keep_mask, x * (1 - keep_mask)
    logits = actor(x, keep_mask)[0]
    nll = multinomial_nll(logits, x if nll_items == "all" else held_out)
    features = torch.stack([kept.sum(1), held_out.sum(1), nll], 1)
    with torch.no_grad():
        ranking = logits.detach().masked_fill(kept > 0, float("-inf"))
        target = top_k_ndcg(ranking, held_out > 0, k)
    return features, target


def critic_loss(critic: Critic, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE to the true NDCG plus a small L2 on the critic's weights."""
    return (F.mse_loss(critic(features.detach()), target)
            + critic.config.l2 * weight_penalty(critic))


class CriticPretraining(nn.Module):
    """Stage 2 as a model for `fit`: the actor is frozen (not in the optimizer, no gradient)."""

    def __init__(self, actor: MultVAE, critic: Critic):
        super().__init__()
        self.actor, self.critic = actor, critic

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features, target = critic_inputs(self.actor, x, self.actor.draw_keep_mask(x),
                                             self.critic.config.k, self.critic.config.nll_items)
        return critic_loss(self.critic, features, target)


class ActorCriticTraining(nn.Module):
    """Stage 3 as a model for `fit`: one loss whose gradient is, for the actor,
    ``-d critic(features) / d actor`` (the critic's weights held constant in that term) and, for
    the critic, the gradient of its MSE on the same batch."""

    def __init__(self, actor: MultVAE, critic: Critic):
        super().__init__()
        self.actor, self.critic = actor, critic
        self.batch_means: list[tuple[float, float]] = []  # (predicted, true) NDCG per batch

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        features, target = critic_inputs(self.actor, x, self.actor.draw_keep_mask(x),
                                         self.critic.config.k, self.critic.config.nll_items)
        constant = {name: t.detach() for name, t in
                    (*self.critic.named_parameters(), *self.critic.named_buffers())}
        predicted = functional_call(self.critic, constant, (features,))
        self.batch_means.append((float(predicted.detach().mean()), float(target.mean())))
        return -predicted.mean() + critic_loss(self.critic, features, target)

    def score(self, batch):
        return self.actor.score(batch)


# ---------------------------------------------------------------------- critic validation
class CriticValidation:
    """How well the critic predicts NDCG@k on validation users it never trained on.

    Each user's full item set (history and targets) is split once by an input dropout mask drawn
    with ``seed``, exactly as in training; the actor (eval mode, ``z = mu``) ranks the dropped
    items. ``evaluate`` reports the critic's R^2, MSE and Pearson correlation with the true
    NDCG; ``per_user`` holds both for a scatter plot.
    """

    def __init__(self, eval_set: EvalSet, n_items: int, keep_prob: float, seed: int = 0,
                 batch_size: int = 1024, device=None):
        batch = eval_set.batch(torch.arange(len(eval_set)))
        self.x = binary_rows(torch.cat([batch.history, batch.targets], 1), n_items, torch.bool)
        generator = torch.Generator().manual_seed(seed)
        self.keep_mask = torch.rand(self.x.shape, generator=generator) < keep_prob
        self.batch_size, self.device, self.name = batch_size, device, eval_set.name
        self.protocol = (f"critic on {len(eval_set):,} validation users: all their items split "
                         f"once by an input dropout mask (keep {keep_prob:.2f}, seed {seed}); "
                         "target NDCG of the actor's ranking of the dropped items, kept items "
                         "excluded")

    @torch.no_grad()
    def measure(self, actor: MultVAE, critic: Critic) -> EvalResult:
        with eval_mode(actor, critic):
            device = self.device or next(actor.parameters()).device
            parts = []
            for rows in torch.arange(len(self.x)).split(self.batch_size):
                features, target = critic_inputs(actor, self.x[rows].to(device).float(),
                                                 self.keep_mask[rows].to(device).float(),
                                                 critic.config.k, critic.config.nll_items)
                parts.append((features, target, critic(features)))
            features, target, predicted = (torch.cat(t) for t in zip(*parts))
        mse = float(F.mse_loss(predicted, target))
        r2 = 1.0 - mse / max(float(target.var(unbiased=False)), 1e-12)
        pearson = float(torch.corrcoef(torch.stack([predicted, target]))[0, 1])
        k = critic.config.k
        return EvalResult("critic", self.protocol, self.name, len(target),
                          {"critic R2": r2, "critic MSE": mse, "critic Pearson": pearson,
                           # a critic that predicts a near-constant has a tiny std
                           "critic std": float(predicted.std()), "NDCG std": float(target.std())},
                          {"predicted NDCG": predicted.cpu(), f"NDCG@{k}": target.cpu(),
                           "features": features.cpu()})

    def evaluate(self, model) -> EvalResult:
        """For `fit`: ``model`` holds ``.actor`` and ``.critic``."""
        return self.measure(model.actor, model.critic)


class ActorCriticMonitor:
    """Stage 3's per-epoch diagnostics, a `fit` callback: how far the actor has moved since the
    stage began (``||theta - theta_0|| / ||theta_0||`` over all its parameters) and *is the actor
    gaming the critic?* The critic's predicted NDCG@k beside the true NDCG@k of the actor's
    ranking, on the critic's validation users (their means, R^2, Pearson) and on the epoch's
    training batches (the means the actor was pushed on). An actor that games the critic raises
    the prediction while the true NDCG stays or falls; a critic that keeps up tracks it."""

    def __init__(self, training: ActorCriticTraining, critic_valid: CriticValidation):
        self.training, self.critic_valid = training, critic_valid
        self.start = [p.detach().clone() for p in training.actor.parameters()]

    @torch.no_grad()
    def __call__(self, epoch: int = 0, model=None) -> dict:
        actor, k = self.training.actor, self.training.critic.config.k
        moved = sum(float((p - p0).pow(2).sum()) for p, p0 in zip(actor.parameters(),
                                                                  self.start))
        size = sum(float(p0.pow(2).sum()) for p0 in self.start)
        measured = self.critic_valid.measure(actor, self.training.critic)
        row = {"actor change": (moved / size) ** 0.5,
               f"valid predicted NDCG@{k}": float(measured.per_user["predicted NDCG"].mean()),
               f"valid true NDCG@{k}": float(measured.per_user[f"NDCG@{k}"].mean()),
               "valid critic R2": measured.metrics["critic R2"],
               "valid critic Pearson": measured.metrics["critic Pearson"]}
        if self.training.batch_means:  # none before the first epoch
            predicted, true = zip(*self.training.batch_means)
            row[f"train predicted NDCG@{k}"] = sum(predicted) / len(predicted)
            row[f"train true NDCG@{k}"] = sum(true) / len(true)
            self.training.batch_means.clear()
        return row


# ---------------------------------------------------------------------- the pipeline
@dataclass
class RaCTConfig:
    actor: MultVAEConfig = field(default_factory=MultVAEConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    actor_epochs: int = 100     # stage 1
    critic_epochs: int = 200    # stage 2: at most ...
    critic_min_epochs: int = 50  # ... and at least this many (or all, if fewer: the authors
                                 # train it 50 epochs)
    critic_min_delta: float = 0.002  # a rise in validation R^2 below this is no improvement
    finetune_epochs: int = 50   # stage 3
    finetune_lr: float = 2e-6   # the actor's learning rate in stage 3 (the critic keeps its own)
    finetune_keep: str = "best"  # stage 3 keeps its best validation epoch (or the pre-trained
                                 # actor if none beats it), or its "last" epoch
    patience: int = 10          # evaluations without improvement before a stage stops

    def __post_init__(self):
        if isinstance(self.actor, dict):
            self.actor = MultVAEConfig(**self.actor)
        if isinstance(self.critic, dict):
            self.critic = CriticConfig(**self.critic)
        if self.finetune_keep not in FINETUNE_KEEP:
            raise ValueError(f"finetune_keep must be one of {FINETUNE_KEEP}; got "
                             f"{self.finetune_keep!r}")
        if self.critic_min_epochs < 1 or self.critic_epochs < 1:
            raise ValueError(f"critic_min_epochs and critic_epochs must be >= 1; got "
                             f"{self.critic_min_epochs} and {self.critic_epochs}")


STAGES = {1: "actor pre-training (ELBO)", 2: "critic pre-training", 3: "actor-critic"}
# The settings each stage reads: a checkpoint of stage k is reused when these agree for stages
# 1..k, so e.g. trying another fine-tuning rate reruns stage 3 only.
STAGE_SETTINGS = {1: ("actor", "actor_epochs", "patience"),
                  2: ("critic", "critic_epochs", "critic_min_epochs", "critic_min_delta"),
                  3: ("finetune_epochs", "finetune_lr", "finetune_keep")}


class RaCTTrainer:
    """Runs the three stages in order. With ``checkpoint_dir`` every finished stage is written to
    ``stage{k}.pt`` (actor, critic, the stage's learning curve); a later run with the same
    configuration, seed and data (a `fingerprint` of the training rows and the validation users)
    loads finished stages instead of training them again, and refuses another run's. Each stage
    reseeds with ``seed + stage``, so a resumed run gives the same numbers as an uninterrupted one.

    ``valid`` is an `Evaluator` whose protocol computes ``metric`` (stages 1 and 3 keep their
    best epoch on it; default NDCG@100, which needs `FullRanking(ks=(..., 100))`).
    """

    def __init__(self, actor: MultVAE, critic: Critic, config: RaCTConfig, train_rows: UserRows,
                 valid, critic_valid: CriticValidation, seed: int = 0,
                 checkpoint_dir=None, progress: bool = True, metric: str = "NDCG@100"):
        if actor.config != config.actor or critic.config != config.critic:
            raise ValueError("the actor's and critic's configs must be config.actor and "
                             "config.critic (they are saved with the checkpoints)")
        name, _, k = metric.partition("@")
        if not name or not k.isdigit() or int(k) not in valid.protocol.ks:
            raise ValueError(f"the selection metric must be <name>@k with k among the validation "
                             f"protocol's ks {valid.protocol.ks}; got {metric!r}")
        self.actor, self.critic, self.config, self.metric = actor, critic, config, metric
        self.train_rows, self.valid, self.critic_valid = train_rows, valid, critic_valid
        self.seed, self.progress = seed, progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.data = fingerprint(train_rows, valid.eval_set)  # a checkpoint's data and split
        self.results: dict[int, FitResult] = {}

    def checkpoint_path(self, stage: int) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / f"stage{stage}.pt"

    def run(self, until: int = 3) -> dict[int, FitResult]:
        for stage in range(1, until + 1):
            self.run_stage(stage)
        return self.results

    def run_stage(self, stage: int) -> FitResult:
        """Load stage ``stage`` from its checkpoint if there is one, else train it."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}; got {stage}")
        if stage > 1 and stage - 1 not in self.results:
            raise RuntimeError(f"stage {stage} starts from stage {stage - 1}: run it (or load it "
                               "from its checkpoint) first")
        path = self.checkpoint_path(stage)
        if path is not None and path.exists():
            self.results[stage] = self._load(path, stage)
            return self.results[stage]
        generator = seed_everything(self.seed + stage)

        def batches(epoch):
            return user_batches(self.train_rows, self.config.actor.batch_size, generator)

        desc = f"stage {stage}: {STAGES[stage]}"
        if stage == 1:
            optimizer = torch.optim.Adam(self.actor.parameters(), lr=self.config.actor.lr,
                                         fused=True)
            result = fit(self.actor, optimizer, batches, self.valid, self.metric,
                         self.config.actor_epochs, self.config.patience, progress=self.progress,
                         desc=desc)
        elif stage == 2:  # to convergence: a plateau of the validation R^2, the last critic kept
            optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.config.critic.lr,
                                         fused=True)
            result = fit(CriticPretraining(self.actor, self.critic), optimizer, batches,
                         self.critic_valid, "critic R2", self.config.critic_epochs,
                         self.config.patience, progress=self.progress, desc=desc,
                         min_epochs=min(self.config.critic_min_epochs,
                                        self.config.critic_epochs),
                         min_delta=self.config.critic_min_delta, keep_best=False)
            self.critic.freeze_feature_statistics()
        else:
            result = self._actor_critic(batches, desc)
        self.results[stage] = result
        if path is not None:
            save_checkpoint({**self._identity(stage), "actor": self.actor.state_dict(),
                             "critic": self.critic.state_dict(), "result": asdict(result)}, path)
        return result

    def _actor_critic(self, batches, desc: str) -> FitResult:
        optimizer = torch.optim.Adam([
            {"params": self.actor.parameters(), "lr": self.config.finetune_lr},
            {"params": self.critic.parameters(), "lr": self.config.critic.lr}], fused=True)
        model = ActorCriticTraining(self.actor, self.critic)
        start_value = self.valid.evaluate(self.actor).metrics[self.metric]
        start_state = copy.deepcopy(model.state_dict())
        monitor = ActorCriticMonitor(model, self.critic_valid)
        start_row = {"epoch": 0, f"valid {self.metric}": start_value, **monitor()}
        keep_best = self.config.finetune_keep == "best"
        result = fit(model, optimizer, batches, self.valid, self.metric,
                     self.config.finetune_epochs, self.config.patience, progress=self.progress,
                     desc=desc, callback=monitor, keep_best=keep_best)
        result.history.insert(0, start_row)
        if keep_best and result.best_value <= start_value:  # none beat the pre-trained actor
            model.load_state_dict(start_state)
            result.best_epoch, result.best_value = 0, start_value
        return result

    def _settings_up_to(self, stage: int) -> dict:
        config = asdict(self.config)
        return {key: config[key] for k in range(1, stage + 1) for key in STAGE_SETTINGS[k]}

    def _identity(self, stage: int) -> dict:
        """What a checkpoint of ``stage`` was made from: its settings, selection metric, seed,
        data and split."""
        return {"stage": stage, "config": self._settings_up_to(stage), "metric": self.metric,
                "n_items": self.actor.n_items, "seed": self.seed, "data": self.data}

    def _load(self, path: Path, stage: int) -> FitResult:
        state = load_checkpoint(path, map_location=next(self.actor.parameters()).device)
        expected = self._identity(stage)
        found = {key: state.get(key) for key in expected}
        if found != expected:
            differ = [key for key in expected if found[key] != expected[key]]
            raise ValueError(f"checkpoint {path} was written by a different run (differs in "
                             f"{', '.join(differ)}); delete it or choose another checkpoint_dir")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        print(f"stage {stage}: loaded from {path} instead of training it")
        return FitResult(**state["result"])
