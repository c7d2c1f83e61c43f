"""CMML / s2Meta experiment (notebook `03_cmml`): scenario-specific cold start.

Scenarios (MovieLens: genre x time slice; synthetic: the scenario generator) are split into
disjoint training / validation / test scenarios; user and item embeddings are pretrained by BPR
on the training scenarios and frozen. Models: support popularity, a global MLP (no adaptation),
first-order MAML, s2Meta and CMML variants (context encoder x modulation). Each trained model's
epoch is selected on validation Recall@20 (never a test metric); test scenarios are evaluated
with every user ranking all candidates (Recall@K, NDCG@K, K in 1..100), also with fewer support
pairs (column ``support``). Diagnostic rows: CMML with the context of another scenario, MAML and
s2Meta at their initialisation (no adaptation).

    python -m coldrec_lib run cmml --dataset ml-100k --data-path ../shared/data/ml-100k --preset full
"""
from __future__ import annotations

import copy

import torch

from ..data.scenarios import (ScenarioSet, ScenarioSplit, defined_scenarios,
                              genre_time_scenarios, pretrain_embeddings, split_scenarios)
from ..data.synthetic import make_scenario_synthetic
from ..evaluation import ResultsTable, ScenarioEvaluator, ScenarioRanking, eval_mode
from ..models.cmml import CMML, CMMLConfig
from ..models.s2meta import S2Meta, S2MetaConfig
from ..models.scenario import FirstOrderMAML, MAMLConfig, SupportPopularity
from ..training import (Checkpoints, FitResult, checkpoint_args, default_device, fit,
                        seed_everything, seed_model)
from . import apply_overrides, dataset_settings, get_data, require_positive

_TASKS = {"support": 64, "query": 128, "n_negatives": 2, "max_support": 512}
PRESETS = {
    "smoke": {
        "synthetic": {"n_users": 600, "n_items": 400, "n_topics": 12, "n_scenarios": 300,
                      "users_per_scenario": 30},
        "scenarios": {}, "dim": 16, "mf_epochs": 40, **_TASKS, "lr": 3e-3,
        "scenarios_per_batch": 16, "batches_per_epoch": 10, "max_epochs": 5, "eval_every": 1,
        "patience": 2,
        "hidden": (32, 32), "s2meta": {"max_steps": 4, "min_steps": 2},
        "support_curve": (4, 16, 64),
    },
    "full": {
        "synthetic": {"n_users": 3000, "n_items": 1500, "n_scenarios": 600},
        "scenarios": {"n_slices": 6, "min_users": 20, "min_candidates": 20},
        "dim": 32, "mf_epochs": 30, **_TASKS, "lr": 1e-3,
        # sized for a CPU: about 15 minutes of one core per seed on ML-100K (validation is
        # most of it, hence eval_every=2); every model stops by patience well inside its cap
        # (the reference checks best + patience x eval_every <= cap)
        "scenarios_per_batch": 16, "batches_per_epoch": 36, "max_epochs": 16, "eval_every": 2,
        "patience": 2, "hidden": (64, 64, 64), "s2meta": {"max_steps": 20, "min_steps": 4},
        "support_curve": (8, 64),
    },
}
PAPER = {"lr": 1e-4, "s2meta.min_steps": 4, "s2meta.max_steps": 20}  # both papers: Adam 1e-4
SELECTION = "Recall@20"  # on validation scenarios only
CMML_VARIANTS = {  # name -> config overrides (the first is "CMML" in the support curve)
    "CMML (mean, FiLM 1+gamma)": {},
    "CMML (GRU, FiLM 1+gamma)": {"encoder": "gru"},
    "CMML (mean, FiLM raw gamma)": {"modulation": "film"},
    "CMML (mean, gating)": {"modulation": "gating"},
    "CMML (mean, final layer)": {"modulation": "final"},
    "CMML (mean, soft modules)": {"modulation": "softm"},
}


def load_scenarios(dataset: str, config: dict, data_path: str | None = None,
                   seed: int = 0) -> ScenarioSet:
    """Synthetic scenarios from the generator, or MovieLens genre x time slices."""
    if dataset == "synthetic":
        data, definitions = make_scenario_synthetic(seed=seed, **config["synthetic"])
        return defined_scenarios(data, definitions, max_support=config["max_support"])
    return genre_time_scenarios(get_data(dataset, data_path), max_support=config["max_support"],
                                **config["scenarios"])


def make_split(dataset: str, config: dict, data_path: str | None = None, seed: int = 0
               ) -> ScenarioSplit:
    return split_scenarios(load_scenarios(dataset, config, data_path, seed), seed=seed)


def make_evaluator(scenarios: ScenarioSet, config: dict, seed: int, support_limit=None,
                   device=None) -> ScenarioEvaluator:
    eval_set = scenarios.eval_set(config["max_support"], config["n_negatives"], seed)
    return ScenarioEvaluator(eval_set, ScenarioRanking(support_limit=support_limit),
                             device=device)


def train_scenario_model(model, split: ScenarioSplit, config: dict, generator: torch.Generator,
                         valid: ScenarioEvaluator, progress: bool = False, desc: str = "train",
                         checkpoints: Checkpoints | None = None) -> FitResult:
    """Adam on the query hinge loss of training tasks; epoch selected on validation Recall@20.
    With ``checkpoints``, a finished model of the same run is loaded instead of trained."""
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                 weight_decay=model.config.weight_decay)
    device = next(model.buffers()).device

    def batches(epoch):
        for _ in range(config["batches_per_epoch"]):
            yield split.train.sample(config["scenarios_per_batch"], config["support"],
                                     config["query"], config["n_negatives"], generator).to(device)

    return fit(model, optimizer, batches, valid, metric=SELECTION,
               max_epochs=config["max_epochs"], patience=config["patience"],
               eval_every=config["eval_every"], grad_clip=5.0,
               progress=progress, desc=desc, **checkpoint_args(checkpoints, desc))


def build_models(embeddings, config: dict, cmml_variants: dict = CMML_VARIANTS) -> dict:
    """Every trained model of the table, untrained, by name."""
    shared = {"hidden": config["hidden"], "lr": config["lr"]}
    models = {name: CMML(embeddings, CMMLConfig(**shared, **overrides))
              for name, overrides in cmml_variants.items()}
    models["s2Meta"] = S2Meta(embeddings, S2MetaConfig(**shared, **config["s2meta"]))
    models["MAML (first order)"] = FirstOrderMAML(embeddings, MAMLConfig(**shared))
    models["Global MLP"] = FirstOrderMAML(embeddings, MAMLConfig(**shared, inner_steps=0))
    return models


class Diagnostic(torch.nn.Module):
    """A trained scenario model whose ``adapt`` is changed; it scores as the model does."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def pair_scores(self, state, users, items, grid=False):
        return self.model.pair_scores(state, users, items, grid)


class ShuffledContext(Diagnostic):
    """Diagnostic: a trained CMML that reads the context of *another* scenario of the batch
    (the previous one; the evaluator batches it in index order, not by size, where a big
    scenario would be alone and read its own). If the context encoder learned nothing
    scenario-specific, nothing changes."""

    reads_other_scenarios = True

    def adapt(self, batch):
        return self.model.adapt(batch).roll(1, 0)


class NoAdaptation(Diagnostic):
    """Diagnostic: MAML or s2Meta scored with its (meta-learned) initial weights, no steps."""

    def adapt(self, batch):
        return self.model.initial_params(len(batch))


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The settings a run of ``preset`` on ``dataset`` uses, with ``overrides`` (`--set`)."""
    unused = ("scenarios",) if dataset == "synthetic" else ()  # genre x time slices: real data
    return dataset_settings(PRESETS, preset, dataset, overrides, unused)


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None) -> ResultsTable:
    """Every row of the table; each trained model is seeded with its own generator
    (`seed_model`), so a run resumed with some models loaded from checkpoints trains the others
    exactly as a straight run does."""
    config = settings_for(dataset, preset, overrides)
    require_positive(config, "dim", "mf_epochs", "support", "query", "n_negatives",
                     "max_support", "scenarios_per_batch", "batches_per_epoch", "max_epochs",
                     "eval_every", "patience")
    device = default_device()
    generator = seed_everything(seed)
    split = make_split(dataset, config, data_path, seed)
    checkpoints = Checkpoints.at(checkpoint_dir, split.train.pairs, split.valid.pairs,
                                 split.test.pairs, config, seed)
    embeddings = pretrain_embeddings(split.train, config["dim"], config["mf_epochs"], generator)
    valid = make_evaluator(split.valid, config, seed, device=device)
    test = make_evaluator(split.test, config, seed + 1, device=device)
    table = ResultsTable(f"Scenario cold start ({split!r})", dataset, preset)
    support = config["max_support"]

    models = build_models(embeddings, config)
    for name, model in models.items():
        model.to(device)
        history = train_scenario_model(model, split, config, seed_model(seed, name), valid,
                                       progress, name, checkpoints)
        # stopped by its cap when best_epoch + patience x eval_every > max_epochs
        extra = {"best_epoch": history.best_epoch, "max_epochs": config["max_epochs"],
                 "patience_epochs": config["patience"] * config["eval_every"],
                 "valid Recall@20": history.best_value, "first loss": history.history[0]["loss"],
                 "last loss": history.history[-1]["loss"]}
        result = test.evaluate(model, name)
        extra.update(learned_part_diagnostics(model, test))
        table.add(result, "scenario", support=support, **extra)
    popularity = SupportPopularity(embeddings, split.train.pair_items).to(device)
    table.add(test.evaluate(popularity, "Support popularity"), "scenario", support=support)
    diagnostics = {"CMML, another scenario's context": ShuffledContext(models[next(iter(CMML_VARIANTS))]),
                   "MAML at its initialisation": NoAdaptation(models["MAML (first order)"]),
                   "s2Meta at its initialisation": NoAdaptation(models["s2Meta"])}
    for name, model in diagnostics.items():
        table.add(test.evaluate(model, name), "scenario", support=support)

    curve = {"CMML": models[next(iter(CMML_VARIANTS))], "s2Meta": models["s2Meta"],
             "MAML (first order)": models["MAML (first order)"],
             "Global MLP": models["Global MLP"], "Support popularity": popularity}
    for limit in config["support_curve"]:
        evaluator = make_evaluator(split.test, config, seed + 1, support_limit=limit,
                                   device=device)
        for name, model in curve.items():
            table.add(evaluator.evaluate(model, name), "scenario", support=limit)
    return table


@torch.no_grad()
def s2meta_steps(model: S2Meta, evaluator: ScenarioEvaluator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inner steps taken and mean step size (input gate of the first weight tensor) on every
    scenario of the evaluator, with the stop controller deciding (``p > 0.5``)."""
    steps, sizes = [], []
    with eval_mode(model):
        for batch in evaluator.eval_set.batches(evaluator.scenarios_per_batch,
                                                evaluator.protocol.support_limit):
            adaptation = model.adapt_with_stops(batch.to(next(model.buffers()).device))
            steps.append(adaptation.steps)
            sizes.append(adaptation.step_sizes)
    return torch.cat(steps).cpu(), torch.cat(sizes).cpu()


@torch.no_grad()
def context_swap(model: CMML, evaluator: ScenarioEvaluator) -> tuple[torch.Tensor, torch.Tensor]:
    """CMML's scores of every evaluated (user, candidate) pair with the scenario's own context
    and with the previous scenario's (as `ShuffledContext`): two flat tensors."""
    own, other = [], []
    with eval_mode(model):
        for batch in evaluator.eval_set.batches(evaluator.scenarios_per_batch,
                                                evaluator.protocol.support_limit):
            batch = batch.to(next(model.buffers()).device)
            contexts = model.adapt(batch)
            for j, swapped in enumerate(contexts.roll(1, 0)):
                pairs = batch.user_mask[j].unsqueeze(1) & batch.candidate_mask[j].unsqueeze(0)
                for context, out in ((contexts[j], own), (swapped, other)):
                    scores = model.pair_scores(context[None], batch.users[j:j + 1],
                                               batch.candidates[j:j + 1], grid=True)[0]
                    out.append(scores[pairs].cpu())
    return torch.cat(own), torch.cat(other)


def learned_part_diagnostics(model, evaluator: ScenarioEvaluator) -> dict[str, float]:
    """What the learned part of a model does on the evaluator's scenarios: CMML's mean
    |score with its own context - with another scenario's|, in units of the scores' standard
    deviation; s2Meta's inner steps (mean, fewest, most) and step size."""
    if isinstance(model, CMML):
        own, other = context_swap(model, evaluator)
        return {"context |Δscore| / std": float((own - other).abs().mean() / own.std())}
    if isinstance(model, S2Meta):
        steps, sizes = s2meta_steps(model, evaluator)
        return {"inner steps": float(steps.mean()), "fewest steps": float(steps.min()),
                "most steps": float(steps.max()), "step size": float(sizes.mean())}
    return {}


def paper_departures(config: dict) -> dict[str, tuple]:
    """The preset's settings that differ from the papers' (`PAPER`): ``{key: (paper,
    preset)}``."""
    def value(key):
        head, _, tail = key.partition(".")
        return config[head][tail] if tail else config[head]
    return {key: (paper, value(key)) for key, paper in PAPER.items() if value(key) != paper}


# ---------------------------------------------------------------------- where the mechanism must help
MECHANISM = {  # `mode_scenarios` settings and training, sized for one CPU thread
    "scenarios": {"n_train": 600, "n_valid": 60, "n_test": 60, "twist": 0.0},
    # lr 3e-3: at 1e-3, 400 updates barely switch CMML's context path on; s2Meta at most 6 inner
    # steps, not the paper's 20: a test's CPU budget
    **_TASKS, "lr": 3e-3, "hidden": (64, 64, 64), "s2meta": {"max_steps": 6, "min_steps": 4},
    "scenarios_per_batch": 16, "batches_per_epoch": 50, "max_epochs": 8, "eval_every": 8,
    "patience": 1, "support_limit": 8,
}


def run_mechanism(seed: int = 0, overrides: dict | None = None
                  ) -> tuple[ResultsTable, dict, ScenarioEvaluator]:
    """Global MLP, first-order MAML, s2Meta and CMML (mean encoder, FiLM 1 + gamma) trained on
    `mode_scenarios`, evaluated on its test scenarios with at most ``support_limit`` support
    pairs, beside support popularity and CMML with another scenario's context. Returns the table
    (with each model's `learned_part_diagnostics`), the trained models by name and the test
    evaluator."""
    from ..data.mechanisms.cmml import mode_scenarios

    config = apply_overrides(copy.deepcopy(MECHANISM), overrides, "the mechanism setting")
    seed_everything(seed)
    data = mode_scenarios(seed=seed, **config["scenarios"])
    valid = make_evaluator(data.split.valid, config, seed, config["support_limit"])
    test = make_evaluator(data.split.test, config, seed + 1, config["support_limit"])
    cmml_name = next(iter(CMML_VARIANTS))
    models = build_models(data.embeddings, config, {cmml_name: CMML_VARIANTS[cmml_name]})
    table = ResultsTable(f"Where the mechanism must help ({data.split!r})", "mode scenarios",
                         "mechanism")
    for name, model in models.items():
        train_scenario_model(model, data.split, config, seed_model(seed, name), valid)
        table.add(test.evaluate(model, name), "scenario", support=config["support_limit"],
                  **learned_part_diagnostics(model, test))
    models["Support popularity"] = SupportPopularity(data.embeddings, data.split.train.pair_items)
    models["CMML, another scenario's context"] = ShuffledContext(models[cmml_name])
    for name in ("Support popularity", "CMML, another scenario's context"):
        table.add(test.evaluate(models[name], name), "scenario", support=config["support_limit"])
    return table, models, test
