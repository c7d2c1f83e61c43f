"""``--set key=value``: preset settings overridden without editing code."""
from functools import reduce

import pytest

from coldrec_lib.experiments import (EXPERIMENTS, get_experiment, metatl, parse_overrides,
                                     parse_setting, preset_settings, ract, setting_keys)
from coldrec_lib.models import melo as melo_models
from coldrec_lib.models import ract as ract_models
from coldrec_lib.models import sequential as sequential_models
from coldrec_lib.training import Checkpoints


def test_overrides_reach_nested_dataclasses_and_keep_the_types():
    settings = preset_settings(metatl.PRESETS, "full", {
        "sasrec_epochs": "4", "sasrec.n_layers": "1", "metatl.lr": "0.01",
        "k_values": "2,3", "synthetic.n_users": "500"})
    assert settings["sasrec_epochs"] == 4 and settings["sasrec"].n_layers == 1
    assert settings["metatl"].lr == 0.01 and settings["k_values"] == (2, 3)
    assert settings["synthetic"]["n_users"] == 500
    assert settings["sasrec"].dim == metatl.PRESETS["full"]["sasrec"].dim  # the rest is kept
    assert metatl.PRESETS["full"]["sasrec"].n_layers == 2  # the preset itself is untouched


def test_unknown_keys_and_bad_values_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown setting 'sasrec_epoch' for preset 'full'; "
                                         r"valid keys: .*sasrec\.n_layers.*sasrec_epochs"):
        preset_settings(metatl.PRESETS, "full", {"sasrec_epoch": "4"})
    with pytest.raises(ValueError, match=r"setting sasrec_epochs='four': expected .*int"):
        preset_settings(metatl.PRESETS, "full", {"sasrec_epochs": "four"})
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides(["sasrec_epochs"])


def test_ract_overrides_reach_the_config_defaults():
    settings = ract.settings_for("ml-100k", "full", {"ract.actor.lr": "0.01",
                                                     "ract.critic_epochs": "7", "n_test": "50"})
    config = ract.ract_config(settings)
    assert config.actor.lr == 0.01 and config.critic_epochs == 7 and settings["n_test"] == 50
    assert config.finetune_lr == 3e-5  # the ML-100K preset's own value is kept
    with pytest.raises(ValueError, match="valid keys: .*ract.actor.lr"):
        ract.settings_for("ml-100k", "full", {"lr": "1"})


# ---------------------------------------------------------------------- every key changes the run

# (preset, dataset): the synthetic data, and ML-100K, where presets have per-dataset settings
RUNS = [("smoke", "synthetic"), ("full", "synthetic"), ("full", "ml-100k")]
CHOICES = (melo_models.LOSSES, sequential_models.LOSSES, ract_models.NLL_ITEMS,
           ract_models.FINETUNE_KEEP)
OTHER_WORD = {word: choices[i - 1] for choices in CHOICES for i, word in enumerate(choices)}


def lookup(settings, key: str):
    return reduce(lambda node, name: node[name] if isinstance(node, dict) else
                  getattr(node, name), key.split("."), settings)


def another_value(value):
    """A different valid value of the same type, as typed after ``--set key=``."""
    if isinstance(value, bool):
        return str(not value).lower()
    if isinstance(value, (int, float)):
        return str(value + 1 if isinstance(value, int) else value * 2 or 0.5)
    if isinstance(value, str):
        return OTHER_WORD[value]
    if isinstance(value, (tuple, list)):
        shorter = value[:-1] if len(value) > 1 else [2 * v for v in value]
        return ",".join(map(str, shorter))
    assert value is None, f"no other value known for {value!r}"
    return "2"


KEYS = [(name, preset, dataset, key)
        for name in EXPERIMENTS for preset, dataset in RUNS
        for key in setting_keys(get_experiment(name).settings_for(dataset, preset))]


@pytest.mark.parametrize("name, preset, dataset, key", KEYS)
def test_every_key_set_accepts_changes_the_settings_of_the_run(name, preset, dataset, key):
    """Each key ``--set`` accepts, set to another valid value, changes that key alone, to the
    value asked, in what the run resolves (over the dataset's own settings too)."""
    settings_for = get_experiment(name).settings_for
    before = settings_for(dataset, preset)
    text = another_value(lookup(before, key))
    after = settings_for(dataset, preset, {key: text})
    changed = [k for k in setting_keys(before) if lookup(after, k) != lookup(before, k)]
    assert changed == [key]
    assert lookup(after, key) == parse_setting(key, text, lookup(before, key))


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_a_run_trains_with_the_settings_it_resolved(name, monkeypatch):
    """``run`` hands what ``settings_for`` resolved (overrides included), unchanged, to
    training (the settings are part of its checkpoints' identity); stopped before training."""
    experiment = get_experiment(name)
    resolved = []
    settings_for = experiment.settings_for
    monkeypatch.setattr(experiment, "settings_for",
                        lambda *args: resolved.append(settings_for(*args)) or resolved[-1])

    def stop(folder, *identity):
        raise Stop(identity)

    monkeypatch.setattr(Checkpoints, "at", stop)
    key = next(k for k in setting_keys(settings_for("synthetic", "smoke"))
               if k in ("patience", "max_epochs", "iterations", "min_user") or k.endswith("epochs"))
    value = lookup(settings_for("synthetic", "smoke"), key) + 1
    with pytest.raises(Stop) as stopped:
        experiment.run("synthetic", "smoke", overrides={key: str(value)})
    assert len(resolved) == 1 and lookup(resolved[0], key) == value
    assert any(part is resolved[0] for part in stopped.value.args[0])
    assert resolved[0] == settings_for("synthetic", "smoke", {key: str(value)})  # not changed


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_settings_a_dataset_never_reads_are_not_accepted(name):
    """The synthetic data's sizes on MovieLens (and CMML's genre x time slices on synthetic
    data) would change nothing: ``--set`` refuses them and lists the keys it accepts."""
    settings_for = get_experiment(name).settings_for
    with pytest.raises(ValueError, match=r"unknown setting 'synthetic.n_users' .*valid keys"):
        settings_for("ml-100k", "full", {"synthetic.n_users": "5"})
    if name == "cmml":
        with pytest.raises(ValueError, match=r"unknown setting 'scenarios.n_slices'"):
            settings_for("synthetic", "full", {"scenarios.n_slices": "3"})
    if name == "metatl":
        with pytest.raises(ValueError, match=r"unknown setting 'new_user_fraction'"):
            settings_for("electronics", "full", {"new_user_fraction": "0.5"})
