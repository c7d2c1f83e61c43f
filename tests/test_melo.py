"""MELO: the task builder (property test), the loss networks, bad input, the experiment."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import DataError, Interactions, Sequences, make_synthetic
from coldrec_lib.data.melo_tasks import melo_tasks
from coldrec_lib.models.melo import MELOConfig, TaskStateLoss, make_meta_learner


@st.composite
def rated_interactions(draw):
    """String user ids, two-digit item ids, ratings 1..5, tied timestamps, shuffled rows."""
    rows = []
    for user in range(draw(st.integers(2, 12))):
        n = draw(st.integers(3, 20))
        items = draw(st.lists(st.integers(10, 99), min_size=n, max_size=n, unique=True))
        time = draw(st.integers(0, 10**6))
        for item in items:
            time += draw(st.integers(0, 2))  # 0: a tie, resolved by the file order
            rows.append((f"user-{user * 13 % 97}", str(item), draw(st.integers(1, 5)), time))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return frame.sample(frac=1, random_state=draw(st.integers(0, 99))).reset_index(drop=True)


@settings(max_examples=40, deadline=None)
@given(rated_interactions(), st.integers(4, 12), st.integers(1, 8), st.integers(1, 3),
       st.booleans(), st.integers(0, 99))
def test_each_task_is_its_users_items_in_time_order(frame, max_len, n_support, n_query, train,
                                                    seed):
    data = Interactions.from_frame(frame)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    users = torch.arange(data.n_users)
    tasks = melo_tasks(sequences, users, max_len=max_len, n_support=n_support, n_query=n_query,
                       train=train, generator=torch.Generator().manual_seed(seed))
    for t, user in enumerate(tasks.users.tolist()):
        raw = data.raw_users[user]
        # the user's rows, in time order (a stable sort keeps the file order of ties)
        mine = frame[frame["user"] == raw].sort_values("timestamp", kind="stable")
        items = data.to_internal_items(mine["item"]).tolist()
        ratings = mine["rating"].tolist()
        pairs = list(zip(items, ratings))

        def runs(row_items, row_ratings):
            real = row_items != 0
            assert not real[:int((~real).sum())].any()  # left padding only
            return list(zip(row_items[real].tolist(), row_ratings[real].tolist()))

        queries = [runs(tasks.query_items[t, q], tasks.query_ratings[t, q])
                   for q in range(tasks.query_items.shape[1])]
        window_end = next(i for i in range(len(pairs), 0, -1)
                          if pairs[i - len(queries[0]):i] == queries[0])
        if not train:
            assert window_end == len(pairs)  # evaluation: the most recent window
            assert len(queries[0]) == min(len(pairs), max_len)
        target = pairs[window_end - 1]
        assert float(tasks.targets[t]) == target[1]
        for query in queries:  # suffixes ending at the target, within the window
            assert 2 <= len(query) <= max_len and pairs[window_end - len(query):window_end] == query
        window_start = window_end - min(len(pairs), max_len)
        context = pairs[window_start:window_end - 1]
        supports = [runs(tasks.support_items[t, s], tasks.support_ratings[t, s])
                    for s in range(tasks.support_items.shape[1])]
        used = [s for s in supports if s]
        assert len(used) == min(n_support, (len(context) - 1) * len(context) // 2)
        assert len(set(map(tuple, used))) == len(used)  # drawn without replacement
        for support in used:  # contiguous runs of the context: never the target
            assert len(support) >= 2
            assert any(context[a:a + len(support)] == support for a in range(len(context)))


def test_bad_input_names_the_value():
    frame = pd.DataFrame({"user": [1, 1, 2, 2, 2], "item": [1, 2, 1, 2, 3],
                          "rating": [4, 5, 3, 9, 1], "timestamp": [1, 2, 1, 2, 3]})
    data = Interactions.from_frame(frame)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    with pytest.raises(DataError, match="9.0"):  # a rating outside 1..5
        melo_tasks(sequences, [1])
    sequences.ratings = sequences.ratings.clamp(max=5)
    with pytest.raises(DataError, match="has 2"):  # too few ratings for support + target
        melo_tasks(sequences, [0, 1])
    assert len(melo_tasks(sequences, [1])) == 1
    from coldrec_lib.experiments.melo import make_backbone
    with pytest.raises(ValueError, match="'gru5rec'.*bert4rec"):
        make_backbone("gru5rec", 10, 8, 10)
    with pytest.raises(ValueError, match="'focal'"):
        make_meta_learner(torch.nn.Linear(2, 2), MELOConfig(loss="focal"))


def test_task_state_encoder_weights_every_position():
    torch.manual_seed(0)
    ratings = torch.tensor([[[0, 0, 5, 5, 1], [0, 0, 0, 2, 3]]]).float()
    weights = TaskStateLoss().task_state(ratings.long(), ratings)
    assert weights.shape == ratings.shape and (weights >= 0).all()
    assert not torch.allclose(weights[0, 0, 2:], weights[0, 0, 2:].mean())  # depends on ratings


def test_task_state_weights_average_one_over_each_tasks_positions():
    """The weights share out the support loss; its size is the inner learning rates' job."""
    torch.manual_seed(0)
    ratings = torch.tensor([[[0, 0, 5, 5, 1], [0, 0, 0, 2, 3]], [[0, 4, 4, 4, 1], [0, 0, 0, 0, 0]]])
    real = ratings != 0
    weights = TaskStateLoss().task_state(ratings, ratings.float())
    torch.testing.assert_close((weights * real).sum((1, 2)) / real.sum((1, 2)), torch.ones(2))
    torch.manual_seed(0)
    raw = TaskStateLoss(normalise=False).task_state(ratings, ratings.float())
    torch.testing.assert_close(weights, raw / ((raw * real).sum((1, 2)) / real.sum((1, 2)))[:, None, None])


def test_experiment_runs_and_is_reproducible(monkeypatch):
    from coldrec_lib.experiments import melo as experiment
    tiny = dict(experiment.PRESETS["smoke"], backbones=("sasrec",), iterations=2, eval_every=1,
                basic_iterations=2, synthetic={"n_users": 80, "n_items": 40, "min_len": 6,
                                               "max_len": 15})
    monkeypatch.setitem(experiment.PRESETS, "smoke", tiny)
    first = experiment.run("synthetic", "smoke", seed=3).to_frame()
    again = experiment.run("synthetic", "smoke", seed=3).to_frame()
    assert list(first["model"]) == [*experiment.METHODS, "User mean", "Item mean"]
    melo = first[first["model"] == "MELO"].iloc[0]
    assert all(melo[f"weight@p{p}"] > 0 for p in range(5))  # MELO's weights are in its row
    assert (first["RMSE"] > 0).all() and (first["MAE"] <= first["RMSE"]).all()
    assert {f"RMSE@{r}" for r in range(1, 6)} <= set(first.columns)
    pd.testing.assert_frame_equal(first, again)  # the same seed gives the same numbers
    with pytest.raises(ValueError, match="'gru5rec'"):
        experiment.run("synthetic", "smoke", backbones=("gru5rec",))
