"""MELO experiment (notebook `02_melo`): rating prediction for cold-start users, Basic vs MAML++
vs MELO on each sequential backbone.

Users are split at random (seeded) into meta-train, validation and test users, so test users are
never seen in training. Basic is trained first (plain regression on the meta-train users' tasks,
cheap, so ``basic_iterations`` of them); MAML and MELO start from Basic's weights (the authors
also pre-train) and are meta-trained ``iterations`` more, so the table isolates what adapting
to the support set adds on top of the same backbone. Every model is scored on the same test tasks: each test user's most
recent window of <= ``max_len`` ratings, the last one the target, the others the support set
(`data/melo_tasks.py`). Basic predicts the target directly; MAML and MELO first adapt to the
support set (3 inner steps). Metrics: RMSE, MAE and RMSE per true rating value (the imbalance
story), pooled over test users, beside two trivial baselines on the same tasks (each user's own
mean rating over the window, the item's mean rating by the training users); MELO's rows carry its
learned weights by rating value and by position. Model selection on validation RMSE. Ratings are
whole numbers ``1..melo.max_rating`` (``--set melo.max_rating=10`` for a 1-10 scale), checked
before training. `mechanism` runs the synthetic setting where MELO's weighting must help, against
MAML++ with its inner step tuned.

    python -m coldrec_lib run melo --dataset ml-100k --data-path ../shared/data/ml-100k --preset full
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..data import Interactions, Sequences, filter_min_counts
from ..data.interactions import PAD
from ..data.mechanisms.melo import make_melo_mechanism
from ..data.melo_tasks import MIN_WINDOW, MeloTasks, check_rating_data, melo_tasks
from ..evaluation import EvalResult, ResultsTable, eval_mode
from ..meta.maml import MAMLConfig
from ..models.bert4rec import BERT4Rec, BERT4RecConfig
from ..models.gru4rec import GRU4Rec, GRU4RecConfig
from ..models.melo import BasicRater, MELOConfig, make_meta_learner, meta_optimizer
from ..models.narm import NARM, NARMConfig
from ..models.sasrec import SASRec, SASRecConfig
from ..training import (Checkpoints, checkpoint_args, default_device, fit, phase,
                        seed_everything)
from . import apply_overrides, dataset_settings, get_data

# The authors' sizes (hidden 32; SASRec/BERT4Rec 2 blocks, 4 heads, FFN 4 x 32 = 128). The GRUs
# run step by step (`sequential.unrolled_gru`): `torch.func.vmap`, which adapts the whole
# meta-batch in one call, has no batching rule for the fused GRU.
BACKBONES = {
    "gru4rec": (GRU4Rec, GRU4RecConfig, {"n_layers": 2, "dropout": 0.1, "fused": False}),
    "narm": (NARM, NARMConfig, {"n_layers": 1, "fused": False}),
    "sasrec": (SASRec, SASRecConfig, {"n_layers": 2, "n_heads": 4, "dropout": 0.1}),
    "bert4rec": (BERT4Rec, BERT4RecConfig, {"n_layers": 2, "n_heads": 4, "dropout": 0.1}),
}
METHODS = ("Basic", "MAML", "MELO")

PRESETS = {
    "smoke": {
        "synthetic": {"n_users": 500, "n_items": 120, "min_len": 6, "max_len": 30},
        "min_item": 1, "min_user": 5, "n_test": 0.3, "valid_fraction": 0.15,
        "backbones": ("sasrec", "bert4rec"), "dim": 16, "max_len": 10, "n_support": 6,
        "n_query": 2, "meta_batch": 8, "iterations": 10, "eval_every": 5, "patience": 2,
        "basic_iterations": 60, "basic_batch": 32,
        "melo": MELOConfig(outer_lr=1e-2, outer_lr_min=1e-3,
                           maml=MAMLConfig(multi_step_iterations=20)),
    },
    "full": {
        "synthetic": {"n_users": 2000, "n_items": 600},
        "min_item": 50, "min_user": 5, "n_test": 1000, "valid_fraction": 0.15,
        "backbones": ("gru4rec", "narm", "sasrec", "bert4rec"), "dim": 32, "max_len": 30,
        "n_support": 25, "n_query": 3, "meta_batch": 16, "iterations": 2000, "eval_every": 100,
        "patience": 5, "basic_iterations": 4000, "basic_batch": 64, "melo": MELOConfig(),
        # ML-100K (the CPU reference, ~20 CPU-min a seed): 943 users, so 200 test users; every
        # model stops after 3 validations (60 iterations) without improvement, well inside its
        # cap (the reference checks best + patience <= cap); GRU4Rec and SASRec (one recurrent,
        # one attention backbone) to keep it on a CPU
        "datasets": {"ml-100k": {"n_test": 200, "iterations": 400, "eval_every": 20,
                                 "patience": 3, "backbones": ("gru4rec", "sasrec"),
                                 "basic_iterations": 600,
                                 "melo": MELOConfig(maml=MAMLConfig(multi_step_iterations=40))}},
    },
}

# The authors' code (YangYongJin/MELO) run on ML-100K for 60 meta-iterations, two seeds; the paper's own
# ML-1M numbers are not in our notes (../shared/papers/melo.md), so nothing is typed for them.
AUTHORS_ML100K = {"RMSE (pooled, range over seeds)": "1.04-1.20",
                  "RMSE@1 MELO": "2.33-2.34", "RMSE@1 MAML": "2.51-2.83"}


@dataclass(frozen=True)
class RatingPrediction:
    """The protocol printed next to every number."""

    max_len: int
    n_support: int
    inner_steps: int

    def describe(self, n_items: int = 0) -> str:
        return (f"rating of each test user's last item, from their most recent <= {self.max_len} "
                f"items; MAML/MELO adapt {self.inner_steps} steps on <= {self.n_support} support "
                f"sub-windows first; RMSE = sqrt(mean squared error) pooled over users, "
                f"RMSE@r over users whose true rating is r")


class RatingEvaluator:
    """Fixed tasks (seeded) for a set of users; ``evaluate(model)`` calls ``model.predict``."""

    def __init__(self, tasks: MeloTasks, protocol: RatingPrediction, name: str,
                 max_rating: int = 5, batch_size: int = 256):
        self.tasks, self.protocol, self.name = tasks, protocol, name
        self.max_rating, self.batch_size = max_rating, batch_size

    def predictions(self, model) -> torch.Tensor:
        device = next(model.parameters()).device
        with eval_mode(model):
            return torch.cat([model.predict(self.tasks.rows(rows).to(device)).cpu()
                              for rows in torch.arange(len(self.tasks)).split(self.batch_size)])

    def evaluate(self, model, name: str | None = None) -> EvalResult:
        return self.score(self.predictions(model), name or type(model).__name__)

    def score(self, predictions: torch.Tensor, name: str) -> EvalResult:
        """RMSE, MAE and RMSE per true rating of ``predictions`` ``[T]`` (rating units)."""
        error = predictions - self.tasks.targets
        metrics = {"RMSE": float(error.pow(2).mean().sqrt()), "MAE": float(error.abs().mean())}
        for r in range(1, self.max_rating + 1):
            of_r = self.tasks.targets == r
            metrics[f"RMSE@{r}"] = float(error[of_r].pow(2).mean().sqrt()) if of_r.any() else math.nan
        return EvalResult(name, self.protocol.describe(), self.name, len(self.tasks), metrics,
                          {"error": error})


def user_mean(tasks: MeloTasks) -> torch.Tensor:
    """The trivial per-user baseline: each task's mean rating over its window before the target
    (the evaluation query row: everything its support sub-windows are drawn from). ``[T]``"""
    window = tasks.query_ratings[:, 0, :-1]
    real = tasks.query_items[:, 0, :-1] != PAD
    return (window * real).sum(1) / real.sum(1).clamp(min=1)


def item_mean(sequences: Sequences, train_users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The trivial per-item baseline: each of ``items``' mean rating by the training users (the
    training users' mean rating for an item they never rated). ``[len(items)]``"""
    owner = torch.repeat_interleave(torch.arange(sequences.n_users), sequences.lengths)
    known = torch.isin(owner, train_users)
    rated, ratings = sequences.items[known], sequences.ratings[known].double()
    n_items = max(int(sequences.items.max()), int(items.max())) + 1
    sums = torch.zeros(n_items, dtype=torch.double).index_add_(0, rated, ratings)
    counts = torch.zeros(n_items, dtype=torch.double).index_add_(0, rated, torch.ones_like(ratings))
    means = torch.where(counts > 0, sums / counts.clamp(min=1), ratings.mean())
    return means[items].to(sequences.ratings.dtype)


def add_baselines(table: ResultsTable, test: RatingEvaluator, sequences: Sequences,
                  train_users: torch.Tensor, **extra) -> None:
    """The user-mean and item-mean rows, scored on the same test tasks as the models."""
    for name, predictions in (("User mean", user_mean(test.tasks)),
                              ("Item mean", item_mean(sequences, train_users,
                                                      test.tasks.query_items[:, 0, -1]))):
        table.add(test.score(predictions, name), "rating", **extra)


def loss_weight_columns(model, tasks: MeloTasks, max_rating: int = 5) -> dict[str, float]:
    """MELO's learned weights as table columns, the mean over the support positions of
    ``tasks``: by rating value (``weight@r1`` ..) and by position from the end of the
    sub-window (``weight@p0``, its last item, .. ``weight@p4``). Empty for a loss without
    per-position weights (MAML's squared error weighs every position 1)."""
    if not hasattr(model.inner_loss, "weight_profile"):
        return {}
    profile = model.inner_loss.weight_profile(tasks.to(next(model.parameters()).device))
    return {**{f"weight@r{r}": profile["by_rating"].get(r, math.nan)
               for r in range(1, max_rating + 1)},
            **{f"weight@p{p}": profile["by_position"].get(p, math.nan) for p in range(5)}}


class _Selection:
    """`fit` keeps the best *higher* value: validation RMSE, negated."""

    def __init__(self, evaluator: RatingEvaluator):
        self.evaluator = evaluator

    def evaluate(self, model) -> EvalResult:
        result = self.evaluator.evaluate(model)
        result.metrics["-RMSE"] = -result.metrics["RMSE"]
        return result


def make_backbone(name: str, n_items: int, dim: int, max_len: int, max_rating: int = 5):
    """Backbone ``name`` whose rating head predicts inside ``1..max_rating``."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    model, config, sizes = BACKBONES[name]
    return model(n_items, config(max_len=max_len, dim=dim, rating_range=(1.0, float(max_rating)),
                                 **sizes))


def split_users(data: Interactions, n_test: int | float, valid_fraction: float, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random users -> (train, valid, test): ``n_test`` test users (a count or a
    fraction), then ``valid_fraction`` of the rest for validation (the original leaves that
    split unseeded)."""
    users = np.random.default_rng(seed).permutation(data.frame["user"].unique())
    n_test = int(round(n_test * len(users))) if isinstance(n_test, float) else int(n_test)
    if not 0 < n_test < len(users) - 1:
        raise ValueError(f"n_test must leave users for training; got {n_test} of {len(users)}")
    n_valid = max(1, int(round(valid_fraction * (len(users) - n_test))))
    parts = users[n_test + n_valid:], users[n_test:n_test + n_valid], users[:n_test]
    return tuple(torch.as_tensor(np.sort(p), dtype=torch.long) for p in parts)


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The settings a run of ``preset`` on ``dataset`` uses: the preset, its block for the
    dataset, then ``overrides`` (`--set`); checked by `check_settings`."""
    return check_settings(dataset_settings(PRESETS, preset, dataset, overrides))


def check_settings(config: dict) -> dict:
    """``config``, or an error naming the first setting that no run can use (before any data is
    read or any model trained)."""
    counts = {"n_support": 1, "n_query": 1, "meta_batch": 1, "basic_batch": 1, "iterations": 1,
              "basic_iterations": 1, "eval_every": 1, "patience": 1, "dim": 1, "min_user": 1, "min_item": 1,
              "max_len": MIN_WINDOW + 1, "melo.max_rating": 2}
    melo = config["melo"]
    values = {**config, "melo.max_rating": melo.max_rating}
    for key, least in counts.items():
        if values[key] < least:
            raise ValueError(f"setting {key}={values[key]!r}: expected a whole number >= {least}")
    if not 0 <= config["valid_fraction"] < 1:
        raise ValueError(f"setting valid_fraction={config['valid_fraction']!r}: expected a "
                         f"fraction in [0, 1)")
    if not config["backbones"]:
        raise ValueError(f"setting backbones is empty: expected one or more of "
                         f"{', '.join(BACKBONES)} (e.g. --set backbones=gru4rec,sasrec)")
    for name in config["backbones"]:
        if name not in BACKBONES:
            raise ValueError(f"setting backbones: unknown backbone {name!r}; expected one of "
                             f"{', '.join(BACKBONES)}")
    return config


def train_model(method: str, backbone_name: str, n_items: int, config: dict,
                sequences: Sequences, train_users: torch.Tensor, valid: RatingEvaluator,
                generator: torch.Generator, device, progress: bool = False,
                start: BasicRater | None = None, checkpoints: Checkpoints | None = None):
    """Train one of Basic / MAML / MELO on ``backbone_name`` (MAML and MELO from the weights of
    ``start``, a trained Basic, when given); select on validation RMSE. Returns the model and a
    dict of diagnostics (best iteration, seconds, tasks/s, mean inner learning rate)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    melo: MELOConfig = config["melo"]
    backbone = make_backbone(backbone_name, n_items, config["dim"], config["max_len"],
                             melo.max_rating)
    if start is not None:
        backbone.load_state_dict(start.model.backbone.state_dict())
    iterations = config["basic_iterations" if method == "Basic" else "iterations"]
    batch_size = config["basic_batch" if method == "Basic" else "meta_batch"]
    if method == "Basic":
        model = BasicRater(backbone, melo.max_rating).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=melo.outer_lr)
    else:
        model = make_meta_learner(backbone, replace(melo, loss="mse" if method == "MAML"
                                                    else melo.loss)).to(device)
        optimizer = meta_optimizer(model, melo)
    # epochs of eval_every iterations, the last one shorter: exactly ``iterations`` in all
    eval_every = config["eval_every"]
    n_epochs = math.ceil(iterations / eval_every)
    floor = melo.outer_lr_min / melo.outer_lr  # cosine outer rate for the backbone group only
    cosine = lambda e: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * e / n_epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [cosine] + [lambda e: 1.0] * (len(optimizer.param_groups) - 1))

    def batches(epoch):  # epoch 1, 2, ...
        for _ in range(min(eval_every, iterations - (epoch - 1) * eval_every)):
            picks = torch.randint(len(train_users), (batch_size,), generator=generator)
            yield melo_tasks(sequences, train_users[picks], config["max_len"], config["n_support"],
                             config["n_query"], max_rating=melo.max_rating, train=True,
                             generator=generator).to(device)

    history = fit(model, optimizer, batches, _Selection(valid), metric="-RMSE",
                  max_epochs=n_epochs, patience=config["patience"], grad_clip=melo.grad_clip,
                  scheduler=scheduler, progress=progress, desc=f"{backbone_name} {method}",
                  **checkpoint_args(checkpoints, f"{backbone_name}-{method}"))
    seconds = sum(row["seconds"] for row in history.history)
    tasks = min(len(history.history) * eval_every, iterations) * batch_size  # early stopping
    # a model is stopped by its cap when best_iteration + patience_iterations > max_iterations
    diagnostics = {"best_iteration": min(history.best_epoch * eval_every, iterations),
                   "max_iterations": iterations,
                   "patience_iterations": config["patience"] * eval_every,
                   "valid_RMSE": -history.best_value, "history": history,
                   "train_tasks_per_s": tasks / seconds}
    if method != "Basic":
        diagnostics["inner_lr_mean"] = float(torch.cat(list(model.inner_lrs().values())).detach().mean())
    return model, diagnostics


def prepare(dataset: str, config: dict, seed: int, data_path: str | None):
    """Data filtered as the authors do, users split, sequences and the fixed evaluation tasks."""
    data = get_data(dataset, data_path, seed, **config.get("synthetic", {}))
    data = filter_min_counts(data, min_user=config["min_user"], min_item=config["min_item"])
    check_rating_data(data, config["melo"].max_rating, MIN_WINDOW + 1, "melo.max_rating")
    return (data, *split_and_evaluators(data, config, seed))


def split_and_evaluators(data: Interactions, config: dict, seed: int):
    """Users split, sequences, and the fixed validation and test tasks of ``data``."""
    train_users, valid_users, test_users = split_users(data, config["n_test"],
                                                       config["valid_fraction"], seed)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    protocol = RatingPrediction(config["max_len"], config["n_support"],
                                config["melo"].maml.inner_steps)
    tasks = {part: melo_tasks(sequences, users, config["max_len"], config["n_support"],
                              max_rating=config["melo"].max_rating,
                              generator=torch.Generator().manual_seed(seed + i))
             for i, (part, users) in enumerate((("valid", valid_users), ("test", test_users)))}
    evaluators = {part: RatingEvaluator(t, protocol, f"{part}: {len(t):,} held-out users",
                                        config["melo"].max_rating) for part, t in tasks.items()}
    return sequences, train_users, evaluators


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None, backbones: tuple[str, ...] | None = None) -> ResultsTable:
    """Basic, MAML and MELO on every backbone; each model draws from its own seeded generator,
    so a run resumed from ``checkpoint_dir`` with some models loaded trains the others exactly
    as an uninterrupted run does."""
    if backbones is not None:
        overrides = {**(overrides or {}), "backbones": tuple(backbones)}
    config = settings_for(dataset, preset, overrides)
    device = default_device()
    seed_everything(seed)
    with phase(f"data: {dataset}", progress):
        data, sequences, train_users, evaluators = prepare(dataset, config, seed, data_path)
    checkpoints = Checkpoints.at(checkpoint_dir, data.frame, train_users, config, seed)
    table = ResultsTable(f"MELO: rating prediction for {len(evaluators['test'].tasks):,} "
                         f"cold-start test users ({data.n_users:,} users, {data.n_items:,} items, "
                         f"{len(data):,} ratings)", data.name, preset)
    for b, backbone in enumerate(config["backbones"]):
        basic = None
        for m, method in enumerate(METHODS):
            generator = seed_everything(100 * seed + len(METHODS) * b + m)
            model, info = train_model(method, backbone, data.n_items, config, sequences,
                                      train_users, evaluators["valid"], generator, device,
                                      progress, start=basic, checkpoints=checkpoints)
            basic = basic or model
            result = evaluators["test"].evaluate(model, method)
            # timings vary run to run: kept out of the (reproducible) table
            extra = {k: v for k, v in info.items() if k not in ("history", "train_tasks_per_s")}
            if method != "Basic":
                extra.update(loss_weight_columns(model, evaluators["test"].tasks,
                                                 config["melo"].max_rating))
            table.add(result, "rating", backbone=backbone, **extra)
    add_baselines(table, evaluators["test"], sequences, train_users, backbone="none")
    return table


# Where the mechanism must help (`data/mechanisms/melo.py`), sized for a CPU test: MAML++ gets a
# grid of inner learning rates, MELO the one MAML++ selected on validation.
MECHANISM = {
    "data": {"n_users": 1000, "n_items": 60, "pool": 5, "disliked": 1, "length": 12},
    "n_test": 200, "valid_fraction": 0.15, "dim": 16, "max_len": 12, "n_support": 6,
    "n_query": 2, "meta_batch": 16, "iterations": 60, "eval_every": 15, "patience": 4,
    "basic_iterations": 60,
    "basic_batch": 32, "inner_lrs": (0.3, 1.5),
    "melo": MELOConfig(outer_lr=1e-2, outer_lr_min=1e-3, maml=MAMLConfig(multi_step_iterations=30)),
}


def mechanism(seed: int = 0, backbone: str = "sasrec", overrides: dict | None = None,
              progress: bool = False) -> ResultsTable:
    """Basic; MAML++ at every inner learning rate of ``inner_lrs`` (its step scale tuned: the
    one with the best validation RMSE is marked ``selected``); MELO at that inner learning rate,
    so that it differs from the selected MAML++ by the learned weighting alone; the user-mean and
    item-mean baselines. MELO's row carries its weights by rating and position."""
    config = apply_overrides(copy.deepcopy(MECHANISM), overrides, "the MELO mechanism setting")
    data = make_melo_mechanism(seed=seed, **config["data"])
    sequences, train_users, evaluators = split_and_evaluators(data, config, seed)
    table = ResultsTable(f"MELO where the mechanism must help: {len(evaluators['test'].tasks)} "
                         f"test users", data.name, "mechanism")
    device = default_device()
    basic, _ = train_model("Basic", backbone, data.n_items, config, sequences, train_users,
                           evaluators["valid"], seed_everything(seed), device, progress)
    table.add(evaluators["test"].evaluate(basic, "Basic"), "rating", inner_lr=math.nan)
    runs = []
    for i, lr in enumerate(config["inner_lrs"]):
        step = {"melo": replace(config["melo"], maml=replace(config["melo"].maml, inner_lr=lr))}
        model, info = train_model("MAML", backbone, data.n_items, {**config, **step}, sequences,
                                  train_users, evaluators["valid"], seed_everything(seed + 1 + i),
                                  device, progress, start=basic)
        runs.append((info["valid_RMSE"], lr, evaluators["test"].evaluate(model, "MAML++")))
    best = min(runs, key=lambda run: run[0])[1]
    for valid, lr, result in runs:
        table.add(result, "rating", inner_lr=lr, valid_RMSE=valid, selected=lr == best)
    step = {"melo": replace(config["melo"], maml=replace(config["melo"].maml, inner_lr=best))}
    model, info = train_model("MELO", backbone, data.n_items, {**config, **step}, sequences,
                              train_users, evaluators["valid"], seed_everything(seed + 99), device,
                              progress, start=basic)
    table.add(evaluators["test"].evaluate(model, "MELO"), "rating", inner_lr=best,
              valid_RMSE=info["valid_RMSE"], selected=True,
              **loss_weight_columns(model, evaluators["test"].tasks, config["melo"].max_rating))
    add_baselines(table, evaluators["test"], sequences, train_users, inner_lr=math.nan)
    return table
