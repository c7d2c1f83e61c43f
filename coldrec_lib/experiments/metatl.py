"""MetaTL experiment (notebook `01_metatl`): new users seen through their K initial items.

Models, all scored on the same new (cold-start) users with the same seeded negatives:
popularity, SASRec trained on the warm users and applied to the K initial items, MetaTL without
its inner step (ablation) and MetaTL. Model selection on the validation new users (sampled-100
MRR, early stopping); test results under 100 sampled negatives (the paper's protocol) and full
catalogue ranking; MetaTL is also trained and tested for every K of ``k_values``. Every trained
model's row records the epoch it was selected at, its epoch cap and patience (a model stopped by
its cap is a failed run, `stopped_by_cap`). `run_mechanism` trains MetaTL and its ablation on
synthetic users who walk by personal translations, where the inner step should help.

    python -m coldrec_lib run metatl --dataset ml-100k --preset full
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch

from ..data import (ColdStartSplit, EvalSet, Interactions, TaskSampler, cold_start_by_part,
                    cold_start_by_time)
from ..data.mechanisms.metatl import make_translation_synthetic
from ..evaluation import (EvalResult, Evaluator, FullRanking, ResultsTable, SampledRanking,
                          evaluate_models, paired_difference)
from ..models.metatl import MetaTL, MetaTLConfig, task_batches
from ..models.popularity import Popularity
from ..models.sasrec import SASRec, SASRecConfig, next_item_batches
from .. import training
from ..training import (Checkpoints, FitResult, checkpoint_args, default_device, fit, phase,
                        seed_everything)
from . import dataset_settings, get_data

PRESETS = {
    "smoke": {
        "synthetic": {"n_users": 600, "n_items": 400},
        "new_user_fraction": 0.3, "valid_fraction": 0.3, "k": 3, "k_values": (2, 3, 4, 5),
        # smoke: smaller batches and a larger step size, so that a minute of CPU is enough
        "metatl": MetaTLConfig(batch_size=256, lr=3e-3), "batches_per_epoch": 20,
        "max_epochs": 15, "patience": 5,
        "sasrec": SASRecConfig(max_len=20, dim=32, n_layers=1, n_heads=1), "sasrec_epochs": 15,
    },
    "full": {
        "synthetic": {"n_users": 3000, "n_items": 1500},
        "new_user_fraction": 0.3, "valid_fraction": 0.3, "k": 3, "k_values": (2, 3, 4, 5),
        "metatl": MetaTLConfig(batch_size=1024), "batches_per_epoch": 25, "max_epochs": 100,
        "patience": 6,
        "sasrec": SASRecConfig(max_len=50, dim=64, n_layers=2, n_heads=2), "sasrec_epochs": 60,
    },
}

# A run of the authors' code (wangjlgz/MetaTL; Electronics, K=3, sampled-100 protocol), metatl.md.
PAPER = {"MRR": 0.336, "NDCG@5": 0.341, "NDCG@10": 0.383, "HR@1": 0.214, "HR@5": 0.458,
         "HR@10": 0.588}
PROTOCOLS = {"sampled-100": SampledRanking(n_negatives=100, seed=0, ks=(1, 5, 10)),
             "full": FullRanking(ks=(1, 5, 10, 20))}
SPLIT_BY_FILE = ("electronics", "metatl-format")  # their files are the cold-start split
SELECTION = ("sampled-100", "MRR")  # validation protocol and metric for model selection
ABLATION = "MetaTL w/o inner step"     # trained without the inner step
NO_TEST_STEP = "MetaTL, beta=0 at test"  # trained with it, scored without it


def make_split(data: Interactions, new_user_fraction: float | None = 0.3,
               valid_fraction: float = 0.3, seed: int = 0) -> ColdStartSplit:
    """Cold-start split. Electronics comes split by its authors (column ``part``: the train file
    and the new-user file: ``new_user_fraction`` is not used); every other dataset is cut by
    time with `cold_start_by_time`."""
    if "part" in data.frame.columns:
        return cold_start_by_part(data, valid_fraction=valid_fraction, seed=seed)
    return cold_start_by_time(data, new_user_fraction=new_user_fraction,
                              valid_fraction=valid_fraction, seed=seed)


def make_evaluators(split: ColdStartSplit, k: int, part: str, device=None
                    ) -> dict[str, Evaluator]:
    """One evaluator per protocol on the new users of ``part`` with more than ``k`` items."""
    eval_set = split.eval_set(part, k)
    return {name: Evaluator(eval_set, protocol, split.n_items, batch_size=2048, device=device)
            for name, protocol in PROTOCOLS.items()}


def train_metatl(split: ColdStartSplit, k: int, config: MetaTLConfig, generator: torch.Generator,
                 batches_per_epoch: int, max_epochs: int, patience: int, device=None,
                 progress: bool = False, desc: str = "MetaTL",
                 checkpoints: Checkpoints | None = None) -> tuple[MetaTL, FitResult]:
    """Meta-train on K-shot tasks from the warm users; select the epoch on validation new users."""
    device = device or default_device()
    model = MetaTL(split.n_items, config).to(device)
    sampler = TaskSampler(split.train_sequences(), k=k)
    valid = make_evaluators(split, k, "valid", device)[SELECTION[0]]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = fit(model, optimizer,
                  lambda epoch: task_batches(sampler, split.n_items, config.batch_size,
                                             batches_per_epoch, generator, device),
                  valid, metric=SELECTION[1], max_epochs=max_epochs, patience=patience,
                  progress=progress, desc=desc, **checkpoint_args(checkpoints, desc))
    return model, history


def train_sasrec(split: ColdStartSplit, k: int, config: SASRecConfig, generator: torch.Generator,
                 max_epochs: int, patience: int, device=None, progress: bool = False,
                 checkpoints: Checkpoints | None = None) -> tuple[SASRec, FitResult]:
    """Train on the warm users' sequences the usual way; select the epoch on validation new
    users seen through their K initial items."""
    device = device or default_device()
    model = SASRec(split.n_items, config).to(device)
    sequences = split.train_sequences()
    valid = make_evaluators(split, k, "valid", device)[SELECTION[0]]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    history = fit(model, optimizer,
                  lambda epoch: next_item_batches(sequences, config.max_len, config.batch_size,
                                                  generator, device=device),
                  valid, metric=SELECTION[1], max_epochs=max_epochs, patience=patience,
                  progress=progress, desc="SASRec", **checkpoint_args(checkpoints, "SASRec"))
    return model, history


def inner_steps(model: MetaTL, eval_set: EvalSet, device=None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per user of ``eval_set`` (their history is the support): the transition vector ``r`` and
    the inner step ``r' - r``, ``[N, d]`` each, with the evaluation's seeded negatives."""
    history = eval_set.batch(torch.arange(len(eval_set))).history.to(device or "cpu")
    model.eval()
    with torch.no_grad():
        relation, adapted = model.relations(history, model.eval_support_negatives(history))
    return relation, adapted - relation


def inner_step_sizes(model: MetaTL, eval_set: EvalSet, device=None) -> dict[str, float]:
    """How far the inner step moves a user (`01_metatl`, section 6): mean L2 norms, over the users
    of ``eval_set``, of the item embeddings, of the transition vector ``r`` and of the step
    ``r' - r``, and the share of users the step moves at all (the hinge of eq. 4 gives a user whose
    support margins all hold no step)."""
    relation, step = inner_steps(model, eval_set, device)
    item_norm = model.items.weight[1:].norm(dim=1).mean().item()
    return {"item norm": item_norm, "r norm": relation.norm(dim=1).mean().item(),
            "step norm": step.norm(dim=1).mean().item(),
            "moved share": (step.norm(dim=1) > 1e-6 * item_norm).float().mean().item()}


def without_test_step(model: MetaTL) -> MetaTL:
    """The trained MetaTL with beta = 0 at test time: the same weights, no inner step."""
    probe = MetaTL(model.n_items, replace(model.config, beta=0.0))
    probe.load_state_dict(model.state_dict())
    return probe.to(model.items.weight.device)


def selection(history: FitResult, max_epochs: int, patience: int) -> dict[str, float]:
    """The epoch `fit` kept, its validation value and the epoch cap and patience it ran under, as
    extra columns of a results row. ``best epoch + patience > max epochs`` means the model was
    stopped by its cap while still improving: a failed run."""
    return {"best epoch": history.best_epoch, f"valid {SELECTION[1]}": history.best_value,
            "max epochs": max_epochs, "patience": patience}


def stopped_by_cap(rows: pd.DataFrame) -> pd.Series:
    """Rows (a frame with ``best epoch``, ``patience``, ``max epochs``) of models stopped by their
    epoch cap instead of by patience."""
    return training.stopped_by_cap(rows["best epoch"], rows["patience"], rows["max epochs"])


# Where the inner step should help (`01_metatl`, section "Where the mechanism must help"): users
# who walk through item space by personal translations (`make_translation_synthetic`); a small
# MetaTL (no dropout, so the setting converges in a minute on one CPU thread).
MECHANISM = {"data": {"n_users": 2000, "n_items": 600}, "k": 3,
             "metatl": MetaTLConfig(dim=32, hidden=(64, 32), dropout=0.0, batch_size=256, lr=3e-3),
             "batches_per_epoch": 20, "max_epochs": 100, "patience": 8}


@dataclass
class MechanismRun:
    data: Interactions                          # item positions and user translations inside
    split: ColdStartSplit
    models: dict[str, MetaTL]                  # MetaTL, the ablation and MetaTL with beta = 0
    histories: dict[str, FitResult]
    results: dict[tuple[str, str], EvalResult]  # (model, protocol) on the test new users

    def margin(self, protocol: str = "full") -> tuple[float, float]:
        """MetaTL's mean per-user MRR minus its ablation's, and two standard errors."""
        return paired_difference(self.results["MetaTL", protocol],
                                 self.results[ABLATION, protocol])


def run_mechanism(seed: int = 0, settings: dict = MECHANISM, device=None) -> MechanismRun:
    """Train MetaTL and its ablation (no inner step) on the personal-translation setting and score
    them, and MetaTL with beta = 0 at test, on the same test new users."""
    device = device or default_device()
    data = make_translation_synthetic(seed=seed, **settings["data"])
    split = make_split(data, seed=seed)
    k, models, histories = settings["k"], {}, {}
    for name, inner_step in (("MetaTL", True), (ABLATION, False)):
        models[name], histories[name] = train_metatl(
            split, k, replace(settings["metatl"], inner_step=inner_step),
            seed_everything(100 * seed + inner_step), settings["batches_per_epoch"],
            settings["max_epochs"], settings["patience"], device, desc=name)
    models[NO_TEST_STEP] = without_test_step(models["MetaTL"])
    results = evaluate_models(models, make_evaluators(split, k, "test", device))
    return MechanismRun(data, split, models, histories, results)


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The settings a run of ``preset`` on ``dataset`` uses, with ``overrides`` (`--set`)."""
    unused = ("new_user_fraction",) if dataset in SPLIT_BY_FILE else ()
    return dataset_settings(PRESETS, preset, dataset, overrides, unused)


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None) -> ResultsTable:
    return _run(dataset, settings_for(dataset, preset, overrides), preset, seed, data_path,
                progress, default_device(), checkpoint_dir)


def _run(dataset, config, preset, seed, data_path, progress, device,
         checkpoint_dir=None) -> ResultsTable:
    """Rows: every model at K under both protocols (with its best epoch and validation MRR), the
    trained MetaTL with beta = 0 at test time, MetaTL's inner-step sizes and its paired MRR
    differences against the ablation and the beta = 0 probe, then popularity and MetaTL at the
    other K (the targets change with K: item K+1). Every trained model draws from its own
    seeded generator, so a run resumed with some models loaded from checkpoints trains the others
    exactly as an uninterrupted run does."""
    seed_everything(seed)
    with phase(f"data: {dataset}", progress):
        data = get_data(dataset, data_path, seed, **config.get("synthetic", {}))
        split = make_split(data, config.get("new_user_fraction"), config["valid_fraction"], seed)
    checkpoints = Checkpoints.at(checkpoint_dir, split, config, seed)
    k = config["k"]
    train = dict(batches_per_epoch=config["batches_per_epoch"], max_epochs=config["max_epochs"],
                 patience=config["patience"], device=device, progress=progress,
                 checkpoints=checkpoints)

    models, extra = {"Popularity": Popularity(split.train, split.n_items).to(device)}, {}
    models["SASRec"], fitted = train_sasrec(split, k, config["sasrec"],
                                            seed_everything(100 * seed),
                                            config["sasrec_epochs"], config["patience"], device,
                                            progress, checkpoints)
    extra["SASRec"] = selection(fitted, config["sasrec_epochs"], config["patience"])
    models[ABLATION], fitted = train_metatl(
        split, k, replace(config["metatl"], inner_step=False), seed_everything(100 * seed + 1),
        desc="ablation", **train)
    extra[ABLATION] = selection(fitted, config["max_epochs"], config["patience"])

    table = ResultsTable(f"MetaTL: new users seen through their first K={k} items ({split!r})",
                         data.name, preset)
    tests = make_evaluators(split, k, "test", device)
    for k_value in sorted(set(config["k_values"]) | {k}):
        metatl, fitted = train_metatl(split, k_value, config["metatl"],
                                      seed_everything(100 * seed + 1 + k_value),
                                      desc=f"MetaTL K={k_value}", **train)
        if k_value == k:
            models["MetaTL"] = metatl
            extra["MetaTL"] = selection(fitted, config["max_epochs"], config["patience"])
        else:
            evaluate_models({"Popularity": models["Popularity"], "MetaTL": metatl},
                            make_evaluators(split, k_value, "test", device), table,
                            {"MetaTL": selection(fitted, config["max_epochs"], config["patience"])},
                            progress=progress, K=k_value)
    models[NO_TEST_STEP] = without_test_step(models["MetaTL"])
    extra["MetaTL"].update(inner_step_sizes(models["MetaTL"], tests["full"].eval_set, device))
    results = evaluate_models(models, tests, progress=progress)
    for (name, protocol), result in results.items():
        row = dict(extra.get(name, {}))
        if name == "MetaTL":
            for other, label in ((ABLATION, "ablation"), (NO_TEST_STEP, "beta=0")):
                difference, noise = paired_difference(result, results[other, protocol])
                row[f"MRR diff vs {label}"], row[f"MRR diff vs {label} 2SE"] = difference, noise
        table.add(result, protocol, K=k, **row)
    table.rows.sort(key=lambda row: (row["K"] != k, row["K"], row["protocol"]))
    return table
