"""``--set key=value``: preset settings overridden without editing code (issue 9)."""
import pytest

from coldrec_lib.experiments import metatl, parse_overrides, preset_settings, ract


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
