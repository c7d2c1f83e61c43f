"""Foundations experiment (notebook `00_foundations`): popularity vs BPR-MF on a leave-one-out
split, each evaluated under full-catalogue ranking and under 100 sampled negatives."""
from __future__ import annotations

import torch

from ..data import leave_one_out
from ..evaluation import Evaluator, FullRanking, ResultsTable, SampledRanking, evaluate_models
from ..models import BPRMF, BPRMFConfig, Popularity, pair_batches
from ..training import Checkpoints, checkpoint_args, default_device, fit, phase, seed_everything
from . import dataset_settings, get_data

PRESETS = {
    "smoke": {"synthetic": {"n_users": 600, "n_items": 400}, "max_epochs": 30, "patience": 4},
    "full": {"synthetic": {"n_users": 3000, "n_items": 1500}, "max_epochs": 200, "patience": 10},
}


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The settings a run of ``preset`` on ``dataset`` uses, with ``overrides`` (`--set`)."""
    return dataset_settings(PRESETS, preset, dataset, overrides)


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None) -> ResultsTable:
    config = settings_for(dataset, preset, overrides)
    generator = seed_everything(seed)
    with phase(f"data: {dataset}", progress):
        data = get_data(dataset, data_path, seed, **config.get("synthetic", {}))
        split = leave_one_out(data)
    checkpoints = Checkpoints.at(checkpoint_dir, split, config, seed)
    device = default_device()
    protocols = {"full": FullRanking(ks=(10, 20)), "sampled-100": SampledRanking(ks=(10,))}
    valid = Evaluator(split.valid, protocols["full"], data.n_items, device=device)
    tests = {name: Evaluator(split.test, p, data.n_items, device=device)
             for name, p in protocols.items()}

    popularity = Popularity(split.train, data.n_items).to(device)
    bpr = BPRMF(data.n_users, data.n_items, BPRMFConfig()).to(device)
    optimizer = torch.optim.Adam(bpr.parameters(), lr=bpr.config.lr,
                                 weight_decay=bpr.config.weight_decay)
    fit(bpr, optimizer, lambda epoch: pair_batches(split.train, data.n_items,
                                                   bpr.config.batch_size, generator, device),
        valid, metric="NDCG@10", max_epochs=config["max_epochs"], patience=config["patience"],
        progress=progress, desc="BPR-MF", **checkpoint_args(checkpoints, "BPR-MF"))

    table = ResultsTable(f"Foundations: popularity vs BPR-MF ({split.description})", data.name,
                         preset)
    evaluate_models({"Popularity": popularity, "BPR-MF": bpr}, tests, table, progress=progress)
    return table
