"""MELO's settings and input: overrides win, exactly the iterations asked, the rating scale the
data has, and one clear error for settings or data no run can use."""
from inspect import signature

import numpy as np
import pandas as pd
import pytest

from coldrec_lib.cli import main
from coldrec_lib.data import DataError, Interactions, make_synthetic
from coldrec_lib.data.melo_tasks import check_rating_data
from coldrec_lib.experiments import melo as experiment

TINY = {"backbones": "sasrec", "synthetic.n_users": "80", "synthetic.n_items": "40",
        "synthetic.max_len": "15"}


class Stop(Exception):
    """Raised by a patched function to end a run once what it uses is known."""


def settings_of_run(monkeypatch, dataset, preset, overrides, data=None):
    """The settings ``experiment.run`` hands to training (its checkpoints' identity), without
    training anything; ``data`` replaces the dataset's files."""
    if data is not None:
        monkeypatch.setattr(experiment, "get_data", lambda *args, **kwargs: data)

    def stop(checkpoint_dir, frame, users, config, seed):
        raise Stop(config)

    monkeypatch.setattr(experiment.Checkpoints, "at", stop)
    with pytest.raises(Stop) as stopped:
        experiment.run(dataset, preset, overrides=overrides)
    return stopped.value.args[0]


def test_overrides_win_over_the_datasets_own_block(monkeypatch):
    overrides = {"backbones": "sasrec", "basic_iterations": "20", "eval_every": "10",
                 "n_test": "50", "iterations": "5", "melo.maml.inner_steps": "1"}
    data = make_synthetic(n_users=300, n_items=60, min_len=8, max_len=30, seed=0)
    config = settings_of_run(monkeypatch, "ml-100k", "full", overrides, data)
    assert config["backbones"] == ("sasrec",) and config["n_test"] == 50
    assert (config["basic_iterations"], config["iterations"], config["eval_every"]) == (20, 5, 10)
    assert config["melo"].maml.inner_steps == 1
    # without overrides the dataset's block still applies over the preset
    config = settings_of_run(monkeypatch, "ml-100k", "full", {}, data)
    assert config["iterations"] == 400 and config["patience"] == 3
    assert config["backbones"] == ("gru4rec", "sasrec")


def train_batches_per_model(monkeypatch, overrides):
    """Run MELO tiny; the number of training batches each of Basic, MAML, MELO drew, and the
    table."""
    drawn = []
    melo_tasks = experiment.melo_tasks

    def counting(*args, train=False, **kwargs):
        drawn.append(train)
        return melo_tasks(*args, train=train, **kwargs)

    monkeypatch.setattr(experiment, "melo_tasks", counting)
    calls = []
    train_model = experiment.train_model

    def recording(method, *args, **kwargs):
        drawn.clear()
        model, info = train_model(method, *args, **kwargs)
        calls.append((method, sum(drawn), info["best_iteration"]))
        return model, info

    monkeypatch.setattr(experiment, "train_model", recording)
    experiment.run("synthetic", "smoke", overrides={**TINY, **overrides})
    return calls


def test_exactly_the_iterations_asked_are_run(monkeypatch):
    calls = train_batches_per_model(monkeypatch, {"basic_iterations": "7", "iterations": "3",
                                                  "eval_every": "5"})
    assert [(method, n) for method, n, _ in calls] == [("Basic", 7), ("MAML", 3), ("MELO", 3)]
    best = dict((method, best) for method, _, best in calls)
    assert best["Basic"] in (5, 7) and best["MAML"] == best["MELO"] == 3


@pytest.mark.parametrize("setting, message", [
    ("n_support=0", "n_support=0: expected a whole number >= 1"),
    ("n_query=0", "n_query=0"), ("eval_every=0", "eval_every=0"),
    ("max_len=2", "max_len=2: expected a whole number >= 3"),
    ("backbones=", "backbones is empty"), ("backbones=gru5rec", "unknown backbone 'gru5rec'"),
    ("valid_fraction=1.0", "valid_fraction=1.0"), ("melo.max_rating=1", "melo.max_rating=1")])
def test_settings_no_run_can_use_are_one_error_before_any_data(setting, message, monkeypatch,
                                                               tmp_path, capsys):
    monkeypatch.setattr(experiment, "get_data", lambda *args, **kwargs: pytest.fail("data read"))
    assert main(["run", "melo", "--set", setting, "--out", str(tmp_path / "r.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error and message in error


def rated(ratings_per_user: dict, source="ratings.csv") -> Interactions:
    rows = [(user, item, rating, t) for user, ratings in ratings_per_user.items()
            for t, (item, rating) in enumerate(ratings)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Interactions.from_frame(frame, source=source)


def test_the_rating_head_spans_the_scale_of_the_data(monkeypatch):
    """Ratings 1..10 with melo.max_rating=10: every trained model can predict up to 10 (its
    rating head saturated high), not at most 5."""
    data = make_synthetic(n_users=80, n_items=40, min_len=6, max_len=15, seed=0)
    data.frame["rating"] = 2 * data.frame["rating"]  # 2..10
    data.frame.loc[0, "rating"] = 1
    monkeypatch.setattr(experiment, "get_data", lambda *args, **kwargs: data)
    trained = []
    train_model = experiment.train_model

    def recording(*args, **kwargs):
        model, info = train_model(*args, **kwargs)
        trained.append((model, signature(train_model).bind(*args, **kwargs).arguments["valid"]))
        return model, info

    monkeypatch.setattr(experiment, "train_model", recording)
    table = experiment.run("synthetic", "smoke", overrides={
        **TINY, "melo.max_rating": "10", "iterations": "1", "basic_iterations": "1",
        "eval_every": "1"}).to_frame()
    assert {f"RMSE@{r}" for r in range(1, 11)} <= set(table.columns)
    assert len(trained) == len(experiment.METHODS)
    for model, valid in trained:
        assert model.model.backbone.config.rating_range == (1.0, 10.0)
        model.model.backbone.rating_bias.data.fill_(30.0)
        assert float(valid.predictions(model).min()) > 9.9


def test_implicit_data_is_an_error_that_names_the_file(tmp_path, capsys):
    """metatl-format files have no rating column: every rating is 1."""
    rng = np.random.default_rng(0)
    for part in ("train", "test_new_user"):
        rows = [(u, i, t) for u in range(30) for t, i in enumerate(rng.choice(50, 8, False))]
        pd.DataFrame(rows).to_csv(tmp_path / f"shop_{part}.csv", sep="\t", header=False,
                                  index=False)
    out = tmp_path / "r.json"
    assert main(["run", "melo", "--dataset", "metatl-format", "--data-path", str(tmp_path),
                 "--set", "min_item=1", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith(f"error: {tmp_path}, field 'rating': expected explicit ratings")
    assert "every rating is 1" in error and not out.exists()


def test_a_wrong_scale_names_the_file_the_setting_and_the_raw_user(tmp_path, capsys):
    """Half stars in an ML-100K-format u.data: the file, melo.max_rating and the raw user id."""
    rows = [(5000 + u, i, 1 + (u + i) % 5, i) for u in range(40) for i in range(1, 12)]
    rows[3] = (5000, 4, 4.5, 4)
    pd.DataFrame(rows).to_csv(tmp_path / "u.data", sep="\t", header=False, index=False)
    assert main(["run", "melo", "--dataset", "ml-100k", "--data-path", str(tmp_path),
                 "--set", "min_item=1", "--out", str(tmp_path / "r.json")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: {tmp_path / 'u.data'}, field 'rating'")
    assert "melo.max_rating=5" in error and "user 5000 has 4.5" in error

    data = rated({5000: [(1, 5)], 7: [(1, 2), (2, 3), (3, 1)]}, source="my.csv")
    with pytest.raises(DataError, match=r"^my.csv, field 'user': .*user 5000 has 1$"):
        check_rating_data(data, 5)
    with pytest.raises(DataError, match=r"the highest is 3 \(set melo.max_rating=3\)"):
        check_rating_data(rated({1: [(1, 1), (2, 3), (3, 2)]}), 5, setting="melo.max_rating")
