"""Property tests: nothing held out leaks into training, for every split."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import (DataError, Interactions, cold_start_by_part, cold_start_by_time,
                              heldout_users, last_n_horizon, leave_one_out)


@st.composite
def interactions(draw, min_per_user=1):
    n_users = draw(st.integers(4, 25))
    rows = []
    for user in range(n_users):
        n = draw(st.integers(min_per_user, 12))
        items = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n, unique=True))
        start = draw(st.integers(0, 1000))
        for step, item in enumerate(items):
            rows.append((user, item, 1 + (user * 7 + step) % 5, start + step * draw(st.integers(0, 3))))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Interactions.from_frame(frame.sample(frac=1, random_state=0))  # file order shuffled


def rows(frame):
    return set(map(tuple, frame[["user", "item", "timestamp"]].to_numpy().tolist()))


def eval_rows(eval_set):
    """(user, item) pairs of an EvalSet's history and targets."""
    out = []
    for seqs in (eval_set.history, eval_set.targets):
        pairs = set()
        for n, u in enumerate(eval_set.users.tolist()):
            pairs |= {(u, i) for i in seqs.items[seqs.offsets[n]:seqs.offsets[n + 1]].tolist()}
        out.append(pairs)
    return out


@settings(max_examples=40, deadline=None)
@given(interactions(), st.integers(0, 3))
def test_cold_start_by_time(data, seed):
    try:
        split = cold_start_by_time(data, new_user_fraction=0.3, seed=seed)
    except DataError:
        return  # every user started at the same time: no cut separates them
    new_users = set(split.valid_users) | set(split.test_users)
    assert not new_users & set(split.train["user"])  # no new user is trained on
    assert not set(split.valid_users) & set(split.test_users)
    assert (split.train["timestamp"] < split.cut_time).all()  # training never sees the future
    assert (split.new.groupby("user")["timestamp"].min() >= split.cut_time).all()
    for part in ("valid", "test"):
        try:
            ev = split.eval_set(part, k=2)
        except DataError:
            continue
        history, targets = eval_rows(ev)
        assert not {u for u, _ in targets} & set(split.train["user"])
        for n, u in enumerate(ev.users.tolist()):  # history = the first K items, in order
            first = split.new[split.new["user"] == u]["item"].tolist()
            h = ev.history.items[ev.history.offsets[n]:ev.history.offsets[n + 1]].tolist()
            t = ev.targets.items[ev.targets.offsets[n]:ev.targets.offsets[n + 1]].tolist()
            assert h + t == first[:3]


def test_cold_start_by_part_needs_the_part_column_and_both_parts():
    frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 3, 4], "timestamp": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="part.*a column naming the part"):
        cold_start_by_part(Interactions.from_frame(frame, rating=None))
    only_train = Interactions.from_frame(frame.assign(part="train"), rating=None)
    with pytest.raises(DataError, match="rows of part 'test_new_user'.*found parts \\['train'\\]"):
        cold_start_by_part(only_train)


@settings(max_examples=40, deadline=None)
@given(interactions(min_per_user=2), st.integers(0, 3))
def test_heldout_users(data, seed):
    split = heldout_users(data, n_valid=1, n_test=2, seed=seed)
    train_users = set(split.train["user"])
    for ev in (split.valid, split.test):
        history, targets = eval_rows(ev)
        assert not set(ev.users.tolist()) & train_users
        assert history and targets and not history & targets
        for u in ev.users.tolist():  # fold-in + held-out = all of the user's items
            items = set(data.frame.loc[data.frame["user"] == u, "item"])
            assert {i for v, i in history | targets if v == u} == items
    assert not set(split.valid.users.tolist()) & set(split.test.users.tolist())


@settings(max_examples=40, deadline=None)
@given(interactions(), st.integers(1, 4))
def test_last_n_horizon(data, n):
    try:
        split = last_n_horizon(data, n=n)
    except DataError:
        return
    train = rows(split.train)
    for ev in (split.valid, split.test):
        history, targets = eval_rows(ev)
        assert not targets & {(u, i) for u, i, _ in train}
        for u in ev.users.tolist():
            user_rows = data.frame[data.frame["user"] == u]
            held = {i for v, i in targets if v == u}
            assert held == set(user_rows["item"].iloc[-n:])  # exactly the last n by time
            assert {i for v, i in history if v == u} == set(user_rows["item"].iloc[:-n])


@settings(max_examples=40, deadline=None)
@given(interactions())
def test_leave_one_out(data):
    try:
        split = leave_one_out(data)
    except DataError:
        return
    train_pairs = {(u, i) for u, i, _ in rows(split.train)}
    _, valid_targets = eval_rows(split.valid)
    test_history, test_targets = eval_rows(split.test)
    assert not valid_targets & train_pairs and not test_targets & train_pairs
    assert valid_targets <= test_history  # the test input includes the validation item
    assert not test_targets & test_history


def test_eval_batch_padding(synthetic):
    split = heldout_users(synthetic, 20, 20)
    batch = split.valid.batch(torch.arange(5))
    assert batch.history.shape[0] == 5 and (batch.history[:, -1] != 0).all()  # left-padded
    assert (batch.targets[:, 0] != 0).all()  # right-padded
    capped = batch.recent(3)
    assert capped.history.shape[1] == 3
    assert torch.equal(capped.history, batch.history[:, -3:])
