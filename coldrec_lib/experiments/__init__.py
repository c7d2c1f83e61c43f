"""Registry of end-to-end experiments, one module per paper, run from the command line:

    python -m coldrec_lib run <experiment> --dataset <name> --preset smoke|full

Each module defines ``PRESETS = {"smoke": {...}, "full": {...}}`` and
``run(dataset, preset, seed, data_path) -> ResultsTable``.
"""
from __future__ import annotations

import copy
import importlib

from ..data import Interactions, load_dataset, make_synthetic

EXPERIMENTS = {
    "foundations": "coldrec_lib.experiments.foundations",
    "metatl": "coldrec_lib.experiments.metatl",
    "ract": "coldrec_lib.experiments.ract",
    "cmml": "coldrec_lib.experiments.cmml",
}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def preset_settings(presets: dict, preset: str) -> dict:
    """A copy of ``presets[preset]`` (safe to modify), or an error naming the presets there are."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(presets)}")
    return copy.deepcopy(presets[preset])


def get_data(dataset: str, data_path: str | None = None, seed: int = 0,
             **synthetic) -> Interactions:
    """``"synthetic"`` makes the seeded synthetic data (keyword arguments go to
    `make_synthetic`); any other name is a registered dataset, read from ``data_path`` if given,
    else downloaded into the cache."""
    if dataset == "synthetic":
        return make_synthetic(seed=seed, **synthetic)
    return load_dataset(dataset, path=data_path)
