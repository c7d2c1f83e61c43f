"""Scenario construction: disjoint splits, no held-out pair in training, tasks and evaluation
sets that respect the scenario, and clear errors for bad scenario definitions."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import DataError, Interactions, load_dataset, make_synthetic
from coldrec_lib.data.scenarios import (defined_scenarios, genre_time_scenarios, item_genres,
                                        pretrain_embeddings, split_scenarios)
from coldrec_lib.data.synthetic import make_scenario_synthetic


@pytest.fixture(scope="module")
def scenario_data():
    return make_scenario_synthetic(n_users=300, n_items=200, n_topics=8, n_scenarios=60,
                                   users_per_scenario=12, seed=0)


def keys(frame, n_items):
    return set((frame["user"] * (n_items + 1) + frame["item"]).tolist())


def test_split_is_disjoint_and_training_never_sees_held_out_pairs(scenario_data):
    scenarios = defined_scenarios(*scenario_data)
    split = split_scenarios(scenarios, seed=3)
    names = [set(part.names) for part in (split.train, split.valid, split.test)]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(map(len, names)) == len(scenarios)
    held_out = keys(split.valid.pairs, scenarios.n_items) | keys(split.test.pairs, scenarios.n_items)
    assert not keys(split.train.pairs, scenarios.n_items) & held_out


def test_training_tasks_stay_in_their_scenario(scenario_data):
    split = split_scenarios(defined_scenarios(*scenario_data), seed=0)
    train = split.train
    batch = train.sample(20, 16, 32, 3, torch.Generator().manual_seed(0))
    positives = keys(train.pairs, train.n_items)
    for n in range(20):
        support = batch.support_items[n][batch.support_mask[n]]
        query = batch.query_items[n][batch.query_mask[n]]
        assert len(support) >= 1 and len(query) >= 1
        # support and query pairs are different pairs of the same scenario
        s_keys = set((batch.support_users[n][batch.support_mask[n]] * (train.n_items + 1)
                      + support).tolist())
        q_keys = set((batch.query_users[n][batch.query_mask[n]] * (train.n_items + 1)
                      + query).tolist())
        assert s_keys <= positives and q_keys <= positives and not s_keys & q_keys
        scenario_items = set(train.candidates["item"].tolist())
        assert set(batch.support_negatives[n][batch.support_mask[n]].flatten().tolist()) <= scenario_items
    # negatives are (almost always) not the user's positives
    neg_keys = (batch.query_users * (train.n_items + 1) + batch.query_negatives)[batch.query_mask]
    assert np.isin(neg_keys.numpy(), list(positives)).mean() < 0.01


def test_eval_set_support_users_are_not_evaluated(scenario_data):
    split = split_scenarios(defined_scenarios(*scenario_data), seed=0)
    eval_set = split.test.eval_set(max_support=512, n_negatives=2, seed=0)
    batch = eval_set.batch(torch.arange(len(eval_set)))
    for n in range(len(eval_set)):
        support_users = set(batch.support_users[n][batch.support_mask[n]].tolist())
        evaluated = set(batch.users[n][batch.user_mask[n]].tolist())
        assert support_users and evaluated and not support_users & evaluated
        assert batch.relevant[n][batch.user_mask[n]].any(1).all()  # every user has a target
        assert not batch.relevant[n][:, ~batch.candidate_mask[n]].any()
    small = eval_set.batch(torch.arange(len(eval_set)), support_limit=4)
    assert int(small.support_mask.sum(1).max()) == 4
    # a smaller support is a prefix of the larger one
    assert torch.equal(small.support_items, batch.support_items[:, :4] * small.support_mask)



def test_buckets_hold_every_scenario_once_with_little_padding_and_the_same_targets(scenario_data):
    split = split_scenarios(defined_scenarios(*scenario_data), seed=0)
    eval_set = split.test.eval_set(max_support=512, n_negatives=2, seed=0)
    everything = eval_set.batch(torch.arange(len(eval_set)))
    users, candidates = everything.user_mask.sum(1), everything.candidate_mask.sum(1)
    groups = eval_set.buckets(3, max_padding=1.1, small=0)
    assert sorted(torch.cat(groups).tolist()) == list(range(len(eval_set)))
    assert max(len(g) for g in groups) <= 3 and any(len(g) > 1 for g in groups)
    for group in groups:
        padded = len(group) * users[group].max() * candidates[group].max()
        assert len(group) == 1 or padded <= 1.1 * (users[group] * candidates[group]).sum()
        batch = eval_set.batch(group)
        for j, s in enumerate(group.tolist()):  # targets found in the group as in the whole
            u, c = int(users[s]), int(candidates[s])
            assert torch.equal(batch.relevant[j, :u, :c], everything.relevant[s, :u, :c])
            assert torch.equal(batch.users[j, :u], everything.users[s, :u])

def test_seeded(scenario_data):
    a = split_scenarios(defined_scenarios(*scenario_data), seed=1)
    b = split_scenarios(defined_scenarios(*scenario_data), seed=1)
    assert a.test.names == b.test.names
    ea, eb = a.test.eval_set(512, 2, seed=5), b.test.eval_set(512, 2, seed=5)
    assert torch.equal(ea.support_negatives, eb.support_negatives)
    ga, gb = (torch.Generator().manual_seed(2) for _ in range(2))
    assert torch.equal(a.train.sample(4, 8, 8, 1, ga).query_negatives,
                       b.train.sample(4, 8, 8, 1, gb).query_negatives)


def test_embeddings_are_pretrained_on_training_scenarios(scenario_data):
    split = split_scenarios(defined_scenarios(*scenario_data), seed=0)
    embeddings = pretrain_embeddings(split.train, dim=8, epochs=15)
    assert embeddings.items.shape == (split.train.n_items + 1, 8)
    assert torch.all(embeddings.items[0] == 0)
    pairs = split.train.pairs
    u, i = torch.tensor(pairs["user"].to_numpy()), torch.tensor(pairs["item"].to_numpy())
    positive = (embeddings.users[u] * embeddings.items[i]).sum(1)
    shuffled = (embeddings.users[u] * embeddings.items[i[torch.randperm(len(i))]]).sum(1)
    assert positive.mean() > shuffled.mean()  # MF learned the training pairs


# ---------------------------------------------------------------------- bad input
def tiny(rows):
    frame = pd.DataFrame(rows, columns=["user", "item", "scenario"])
    return Interactions.from_frame(frame, rating=None, timestamp=None, source="tiny",
                                   duplicates="keep")  # a pair may sit in two scenarios


def test_too_few_users_names_the_scenario():
    data = tiny([(1, 10, "a"), (2, 10, "a"), (3, 11, "b")])
    with pytest.raises(DataError, match=r"scenario 'b'.*at least 2 users.*support.*has 1"):
        defined_scenarios(data, {"a": [10, 11], "b": [10, 11]}, min_users=2)


def test_unknown_items_name_the_scenario():
    data = tiny([(1, 10, "a"), (2, 11, "a")])
    with pytest.raises(DataError, match=r"scenario 'a'.*unknown raw item ids \[99\]"):
        defined_scenarios(data, {"a": [10, 11, 99]}, min_users=2)


def test_empty_candidates_name_the_scenario():
    data = tiny([(1, 10, "a"), (2, 11, "a"), (1, 10, "b"), (2, 10, "b")])
    with pytest.raises(DataError, match=r"scenario 'b'.*non-empty candidate set"):
        defined_scenarios(data, {"a": [10, 11], "b": []}, min_users=2)


def test_pairs_outside_the_candidates_are_an_error():
    data = tiny([(1, 10, "a"), (2, 11, "a")])
    with pytest.raises(DataError, match=r"scenario 'a'.*among the scenario's candidates"):
        defined_scenarios(data, {"a": [10]}, min_users=2)


# ---------------------------------------------------------------------- genre x time
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n_slices=st.integers(1, 4), string_ids=st.booleans())
def test_genre_time_scenarios_on_realistic_ids(seed, n_slices, string_ids):
    """Two-digit and string ids, shuffled rows, tied timestamps: every scenario's pairs are films
    of its genre rated in its time slice, and the candidates are exactly those films."""
    base = make_synthetic(n_users=60, n_items=40, seed=seed)
    frame = base.frame.sample(frac=1.0, random_state=seed)
    frame = frame.assign(timestamp=(frame["timestamp"] // 86_400) * 86_400)  # many ties
    rename_user = (lambda u: f"u{u:02d}") if string_ids else (lambda u: u + 10)
    rename_item = (lambda i: f"m{i:02d}") if string_ids else (lambda i: i + 10)
    frame = frame.assign(user=[rename_user(u) for u in base.raw_users[frame["user"]]],
                         item=[rename_item(i) for i in base.raw_items[frame["item"]]])
    features = pd.DataFrame({"genres": base.item_features["genres"].to_numpy()},
                            index=[rename_item(i) for i in base.raw_items[1:]])
    data = Interactions.from_frame(frame, item_features=features, source="shuffled")
    scenarios = genre_time_scenarios(data, n_slices=n_slices, min_users=2, min_candidates=1)
    names, matrix = item_genres(data)
    for s, name in enumerate(scenarios.names):
        genre = names.index(name.split(" @ ")[0])
        pairs = scenarios.pairs[scenarios.pairs["scenario"] == s]
        assert matrix[pairs["item"].to_numpy(), genre].all()
        assert set(pairs["item"]) == set(scenarios.candidates.loc[
            scenarios.candidates["scenario"] == s, "item"])
    assert len(scenarios) <= len(names) * n_slices


def test_item_genres_reads_flag_columns():
    frame = pd.DataFrame({"user": [1, 2], "item": [5, 6]})
    flags = pd.DataFrame({"title": ["x", "y"], "Action": [1, 0], "Drama": [1, 1]}, index=[5, 6])
    data = Interactions.from_frame(frame, rating=None, timestamp=None, item_features=flags)
    names, matrix = item_genres(data)
    assert names == ["Action", "Drama"]
    assert matrix.tolist() == [[False, False], [True, True], [False, True]]


def test_movielens_100k_scenarios(ml100k_folder):
    data = load_dataset("ml-100k", path=ml100k_folder)
    scenarios = genre_time_scenarios(data, n_slices=6, min_users=20, min_candidates=20)
    assert len(scenarios) > 50
    assert any(name.startswith("Drama") for name in scenarios.names)
    split = split_scenarios(scenarios, seed=0)
    assert len(split.test) >= 10


def genre_data(frame_changes=None, feature_ids=lambda i: i):
    base = make_synthetic(n_users=60, n_items=40, seed=0)
    frame = base.frame.assign(user=base.raw_users[base.frame["user"]],
                              item=base.raw_items[base.frame["item"]], **(frame_changes or {}))
    features = pd.DataFrame({"genres": base.item_features["genres"].to_numpy()},
                            index=[feature_ids(i) for i in base.raw_items[1:]])
    return Interactions.from_frame(frame, item_features=features, source="ratings.csv")


def test_timestamps_that_leave_a_time_slice_empty_are_an_error_naming_the_field():
    genre_time_scenarios(genre_data(), n_slices=4, min_users=2, min_candidates=1)
    with pytest.raises(DataError, match=r"field 'timestamp': expected timestamps that split the "
                                        r"interactions into n_slices=4 .* 3 slices are empty "
                                        r"\(only 1 distinct"):
        genre_time_scenarios(genre_data({"timestamp": 7}), n_slices=4, min_users=2,
                             min_candidates=1)


def test_an_item_table_under_other_ids_is_an_error_naming_it():
    with pytest.raises(DataError, match=r"field 'item_features': expected genres for the rated "
                                        r"items.* 40 of 40 items have none"):
        genre_time_scenarios(genre_data(feature_ids=lambda i: i + 1000), min_users=2,
                             min_candidates=1)


def test_no_scenario_left_is_an_error_naming_the_thresholds():
    with pytest.raises(DataError, match=r"min_users=1000 users .*none of the \d+ has"):
        genre_time_scenarios(genre_data(), n_slices=2, min_users=1000)
