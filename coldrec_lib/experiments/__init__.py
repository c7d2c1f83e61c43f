"""Registry of end-to-end experiments, one module per paper, run from the command line:

    python -m coldrec_lib run <experiment> --dataset <name> --preset smoke|full

Each module defines ``PRESETS = {"smoke": {...}, "full": {...}}``,
``settings_for(dataset, preset, overrides) -> dict`` (the settings its run uses) and
``run(dataset, preset, seed, data_path, progress, overrides, checkpoint_dir) -> ResultsTable``;
``overrides`` (``--set key=value`` on the command line) change a preset's settings without
editing code (`dataset_settings`), ``checkpoint_dir`` keeps finished models for a resumed run.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import importlib

from ..data import Interactions, load_dataset, make_synthetic

EXPERIMENTS = {
    "foundations": "coldrec_lib.experiments.foundations",
    "metatl": "coldrec_lib.experiments.metatl",
    "ract": "coldrec_lib.experiments.ract",
    "sequential": "coldrec_lib.experiments.sequential",
    "melo": "coldrec_lib.experiments.melo",
    "cmml": "coldrec_lib.experiments.cmml",
    "generation": "coldrec_lib.experiments.generation",
}


def get_experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; registered: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def preset_settings(presets: dict, preset: str, overrides: dict | None = None) -> dict:
    """A copy of ``presets[preset]`` (safe to modify) with ``overrides`` applied
    (`apply_overrides`), or an error naming the presets there are."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(presets)}")
    return apply_overrides(copy.deepcopy(presets[preset]), overrides, f"preset {preset!r}")


def dataset_settings(presets: dict, preset: str, dataset: str, overrides: dict | None = None,
                     unused: tuple[str, ...] = ()) -> dict:
    """The settings a run on ``dataset`` uses: the preset, then its block for this dataset
    (``"datasets": {"ml-100k": {...}}``), then ``overrides``, last, so the user always has the
    final word. Settings the run does not read on this dataset are left out (`for_dataset`), so
    every key ``--set`` accepts changes what runs."""
    settings = preset_settings(presets, preset)
    settings.update(settings.pop("datasets", {}).get(dataset, {}))
    return apply_overrides(for_dataset(settings, dataset, unused), overrides,
                           f"preset {preset!r} on {dataset}")


def for_dataset(settings: dict, dataset: str, unused: tuple[str, ...] = ()) -> dict:
    """``settings`` without the keys a run on ``dataset`` never reads: ``unused`` and, on real
    data, the synthetic data's sizes."""
    unused = unused + (() if dataset == "synthetic" else ("synthetic",))
    return {key: value for key, value in settings.items() if key not in unused}


def setting_keys(settings) -> list[str]:
    """Every key ``--set`` accepts, dotted into dicts and dataclasses (``sasrec.n_layers``)."""
    if dataclasses.is_dataclass(settings):
        settings = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    keys = []
    for key, value in settings.items():
        if isinstance(value, dict) or dataclasses.is_dataclass(value):
            keys += [f"{key}.{sub}" for sub in setting_keys(value)]
        else:
            keys.append(str(key))
    return keys


def apply_overrides(settings: dict, overrides: dict | None, where: str = "the settings") -> dict:
    """``settings`` with ``{"key": value}`` replaced; a dotted key reaches into a nested dict or
    dataclass (``{"sasrec.n_layers": "1"}``). A string value is converted to the type of the value
    it replaces (`parse_setting`). An unknown key is an error that lists the valid ones."""
    valid = setting_keys(settings)
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ValueError(f"unknown setting {key!r} for {where}; valid keys: "
                             f"{', '.join(valid)}")
        settings = _replace(settings, key.split("."), value, key)
    return settings


def _replace(container, path: list[str], value, key: str):
    name, rest = path[0], path[1:]
    old = getattr(container, name) if dataclasses.is_dataclass(container) else container[name]
    new = _replace(old, rest, value, key) if rest else parse_setting(key, value, old)
    if dataclasses.is_dataclass(container):
        return dataclasses.replace(container, **{name: new})
    container[name] = new
    return container


def parse_setting(key: str, value, current):
    """``value`` (a string from the command line) as the type of ``current``: bool (true/false),
    int, float, str, or a tuple/list of comma-separated values typed like its first element;
    a ``None`` setting takes a Python literal. Non-strings pass through unchanged."""
    if not isinstance(value, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError("expected true or false")
            return value.lower() in ("true", "1", "yes")
        if isinstance(current, (tuple, list)):
            kind = type(current[0]) if current else ast.literal_eval
            items = [kind(v.strip()) for v in value.split(",") if v.strip()]
            return type(current)(items)
        if current is None:
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
        if isinstance(current, int):
            return int(value)
        return type(current)(value)
    except ValueError as error:
        raise ValueError(f"setting {key}={value!r}: expected a value like {current!r} "
                         f"({type(current).__name__}); {error}") from None


def require_positive(settings: dict, *keys: str) -> None:
    """An error naming the first (dotted) setting of ``keys`` below 1, e.g. ``max_epochs=0``."""
    for key in keys:
        value = settings
        for name in key.split("."):
            value = value[name]
        if value < 1:
            raise ValueError(f"setting {key}={value!r}: expected a whole number >= 1")


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` (``--set``, repeatable) as an ordered dict."""
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: expected key=value, e.g. --set sasrec_epochs=4")
        overrides[key.strip()] = value.strip()
    return overrides


def get_data(dataset: str, data_path: str | None = None, seed: int = 0,
             **synthetic) -> Interactions:
    """``"synthetic"`` makes the seeded synthetic data (keyword arguments go to
    `make_synthetic`); any other name is a registered dataset, read from ``data_path`` if given,
    else downloaded into the cache."""
    if dataset == "synthetic":
        return make_synthetic(seed=seed, **synthetic)
    return load_dataset(dataset, path=data_path)
