"""Sequential next-item experiment (taught in notebook `06_sequential_backbones`,
cited by 02 and 05): popularity, BPR-MF and the four backbones (GRU4Rec, NARM, SASRec, BERT4Rec)
on a leave-one-out split, ranked over the whole catalogue with the user's seen items masked, and
unmasked beside it (RecBole's sequential default does not mask).

Every backbone trains on sliding windows (every training item a target, `data.windows`) with
full-softmax cross-entropy, selects its epoch on validation NDCG@10 (early stopping; a
wall-clock budget per model when ``time_budget`` is set, e.g. ``--set time_budget=300``), and
is tested on the last item with the validation item in its input.
"""
from __future__ import annotations

import torch

from ..data import Split, leave_one_out
from ..evaluation import Evaluator, FullRanking, ResultsTable, evaluate_models
from ..models import (BERT4Rec, BERT4RecConfig, BPRMF, BPRMFConfig, GRU4Rec, GRU4RecConfig,
                      NARM, NARMConfig, Popularity, SASRec, SASRecConfig, pair_batches)
from ..models.successor import MostFrequentSuccessor
from ..training import (DIVERGED_COLUMN, Checkpoints, FitResult, TrainingDiverged,
                        checkpoint_args, default_device, fit, phase, seed_everything, seed_model)
from . import dataset_settings, get_data, require_positive

BACKBONES = {"GRU4Rec": (GRU4Rec, GRU4RecConfig), "NARM": (NARM, NARMConfig),
             "SASRec": (SASRec, SASRecConfig), "BERT4Rec": (BERT4Rec, BERT4RecConfig)}
PROTOCOLS = {"full, seen masked": FullRanking(ks=(10, 20)),
             "full, unmasked": FullRanking(ks=(10, 20), mask_history=False)}
SELECTION = "NDCG@10"  # on validation, seen items masked

PRESETS = {
    # smoke: the recurrent models sit at popularity's level for a few epochs before they pick up
    # the transitions, and BERT4Rec's cloze loss learns slowest: batch 32, lr 1e-2, patience 6
    # and at most 20 epochs get every backbone past popularity, seen items masked, in seeds 0-4
    # (BERT4Rec's smallest lead: 0.093 against 0.078 in seed 0; notebook 06)
    "smoke": {"synthetic": {"n_users": 600, "n_items": 200}, "max_epochs": 20, "patience": 6,
              "time_budget": None, "bpr_epochs": 20, "eval_batch_size": None,
              "backbone": {"max_len": 20, "dim": 32, "batch_size": 32, "lr": 1e-2},
              "models": {"SASRec": {"n_layers": 1, "n_heads": 1},
                         "BERT4Rec": {"n_layers": 1, "n_heads": 1}}},
    # full: trained to convergence, ~15 CPU minutes per seed on ML-100K (one thread), most of
    # it BERT4Rec, whose cloze loss sees a fifth of the positions per epoch. Small batches of
    # windows (~800 targets each) and lr 5e-3 reach a given NDCG in far fewer epochs than 128
    # windows at 2e-3 (an epoch is only 76-151 updates); SASRec did as well with 32 windows
    # (README, "Against RecBole"). Patience 20: validation NDCG@10 over 943 users moves by
    # ~0.005 from epoch to epoch, and a patience of 5 stopped BERT4Rec while it still improved.
    "full": {"synthetic": {"n_users": 3000, "n_items": 1500}, "max_epochs": 200, "patience": 20,
             "time_budget": None, "bpr_epochs": 100, "eval_batch_size": None,
             "backbone": {"max_len": 50, "dim": 64, "batch_size": 16, "lr": 5e-3},
             "models": {"SASRec": {"batch_size": 32}}},
}


def make_evaluator(eval_set, protocol, split: Split, settings: dict, device) -> Evaluator:
    """Users scored ``eval_batch_size`` at a time (``None``: as many as bound the memory of a
    batch's scores over the catalogue, `Evaluator`)."""
    return Evaluator(eval_set, protocol, split.n_items, settings["eval_batch_size"],
                     device=device)


def build_backbone(name: str, n_items: int, settings: dict, device=None):
    """Backbone ``name`` with the preset's shared and per-model settings."""
    model_class, config_class = BACKBONES[name]
    config = config_class(**{**settings["backbone"], **settings["models"].get(name, {})})
    return model_class(n_items, config).to(device or default_device())


def train_backbone(name: str, split: Split, settings: dict, generator: torch.Generator,
                   device=None, progress: bool = False, callback=None,
                   checkpoints: Checkpoints | None = None) -> tuple[torch.nn.Module, FitResult]:
    """Train one backbone on the split's training sequences; epoch chosen on validation."""
    device = device or default_device()
    model = build_backbone(name, split.n_items, settings, device)
    sequences = split.train_sequences()
    valid = make_evaluator(split.valid, PROTOCOLS["full, seen masked"], split, settings, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                 weight_decay=model.config.weight_decay)
    result = fit(model, optimizer, lambda epoch: model.epoch_batches(sequences, generator,
                                                                     device=device),
                 valid, SELECTION, settings["max_epochs"], settings["patience"],
                 progress=progress, desc=name, callback=callback,
                 time_budget=settings["time_budget"], **checkpoint_args(checkpoints, name))
    return model, result


def train_bpr(split: Split, settings: dict, generator: torch.Generator, device=None,
              progress: bool = False, checkpoints: Checkpoints | None = None
              ) -> tuple[BPRMF, FitResult]:
    device = device or default_device()
    model = BPRMF(split.n_users, split.n_items, BPRMFConfig()).to(device)
    valid = make_evaluator(split.valid, PROTOCOLS["full, seen masked"], split, settings, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                 weight_decay=model.config.weight_decay)
    result = fit(model, optimizer,
                 lambda epoch: pair_batches(split.train, split.n_items, model.config.batch_size,
                                            generator, device),
                 valid, SELECTION, settings["bpr_epochs"], settings["patience"],
                 progress=progress, desc="BPR-MF", time_budget=settings["time_budget"],
                 **checkpoint_args(checkpoints, "BPR-MF"))
    return model, result


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The settings a run of ``preset`` on ``dataset`` uses, with ``overrides`` (`--set`)."""
    return dataset_settings(PRESETS, preset, dataset, overrides)


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None) -> ResultsTable:
    """Every model of the table; each is seeded with its own generator (`seed_model`), so a run
    resumed with some models loaded from checkpoints trains the others exactly as a straight
    run does."""
    settings = settings_for(dataset, preset, overrides)
    require_positive(settings, "max_epochs", "bpr_epochs", "patience", "backbone.max_len",
                     "backbone.dim", "backbone.batch_size")
    seed_everything(seed)
    with phase(f"data: {dataset}", progress):
        data = get_data(dataset, data_path, seed, **settings.get("synthetic", {}))
        split = leave_one_out(data)
    checkpoints = Checkpoints.at(checkpoint_dir, split, settings, seed)
    device = default_device()

    models = {"Popularity": Popularity(split.train, split.n_items).to(device)}
    models["Successor"] = MostFrequentSuccessor(split.train, split.n_items).to(device)
    extra = {"Popularity": {"best epoch": 0, "epochs": 0}}
    diverged = []
    for name in ("BPR-MF", *BACKBONES):
        generator = seed_model(seed, name)
        try:
            models[name], result = (
                train_bpr(split, settings, generator, device, progress, checkpoints)
                if name == "BPR-MF" else
                train_backbone(name, split, settings, generator, device, progress, None,
                               checkpoints))
        except TrainingDiverged as error:  # the other models' results are kept
            print(f"{error}; its rows are marked diverged")
            diverged.append(error)
            continue
        extra[name] = {"best epoch": result.best_epoch, "epochs": len(result.history)}

    table = ResultsTable(f"Sequential next-item recommendation ({split!r})", data.name, preset)
    tests = {name: make_evaluator(split.test, protocol, split, settings, device)
             for name, protocol in PROTOCOLS.items()}
    evaluate_models(models, tests, table, extra, progress=progress)
    table.rows += [{"model": error.model, "protocol": protocol, "users": len(split.test),
                    DIVERGED_COLUMN: error.epoch} for error in diverged for protocol in PROTOCOLS]
    return table
