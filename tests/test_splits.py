"""Property tests: nothing held out leaks into training, and every sequence a split builds is
that user's own items in time order, for every split."""
import numbers
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import (DataError, Interactions, Sequences, cold_start_by_part,
                              cold_start_by_time, heldout_users, last_n_horizon, leave_one_out)


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


# ---------------------------------------------------------------- every sequence is its user's own
# Users numbered in string order with rows never re-sorted would give training users another
# user's items. Frames here have two-digit or string ids (whose string
# order differs from numeric order), shuffled rows, tied timestamps and repeated pairs.
@st.composite
def raw_frames(draw, parts=("",)):
    """A raw DataFrame (file order = row order) with >= 12 users per part."""
    kind = draw(st.sampled_from(["int", "str"]))
    rows = []
    for part in parts:
        ids = draw(st.lists(st.integers(0, 99), min_size=12, max_size=24, unique=True))
        for raw in ids:
            n = draw(st.integers(1, 9))
            items = draw(st.lists(st.integers(1, 25), min_size=n, max_size=n))  # may repeat
            times = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))  # ties
            user = raw if kind == "int" else f"u{raw}"
            rows += [(user, i, 1 + i % 5, t, part) for i, t in zip(items, times)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp", "part"])
    frame = frame.sample(frac=1, random_state=draw(st.integers(0, 2**16))).reset_index(drop=True)
    return frame if parts != ("",) else frame.drop(columns="part")


def own_items(frame, key=("user",)):
    """{user key: [(raw item, time), ...]}: time order, ties in file order, first of each pair."""
    out = {}
    ordered = frame.assign(_row=np.arange(len(frame))).sort_values(["timestamp", "_row"])
    for k, rows in ordered.groupby(list(key), sort=False):
        pairs = rows.drop_duplicates("item")[["item", "timestamp"]].itertuples(index=False)
        out[k if len(key) > 1 else k[0]] = [tuple(p) for p in pairs]
    return out


def items_of(seqs, row, data):
    return list(data.raw_items[seqs.items[seqs.offsets[row]:seqs.offsets[row + 1]].numpy()])


def assert_sequences(seqs, keys, expected, data):
    """Row n of ``seqs`` is user ``keys[n]``'s ``expected[keys[n]]`` list of items, exactly."""
    assert seqs.n_users == len(keys)
    for row, key in enumerate(keys):
        assert items_of(seqs, row, data) == expected.get(key, []), key


def as_interactions(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # repeated pairs: the drop warning
        return Interactions.from_frame(frame)


def eval_keys(ev, keys):
    return [keys[u] for u in ev.users.tolist()]


def assert_new_user_eval_sets(split, keys, own, data, k=2):
    """Cold-start evaluation: history = a new user's first K items, target = the next one."""
    for part in ("valid", "test"):
        try:
            ev = split.eval_set(part, k=k)
        except DataError:
            continue
        users = eval_keys(ev, keys)
        assert_sequences(ev.history, users, {u: [i for i, _ in own[u][:k]] for u in users}, data)
        assert_sequences(ev.targets, users, {u: [own[u][k][0]] for u in users}, data)


@settings(max_examples=30, deadline=None)
@given(raw_frames(), st.integers(0, 3))
def test_cold_start_by_time_sequences_are_each_users_own(frame, seed):
    data, own = as_interactions(frame), own_items(frame)
    try:
        split = cold_start_by_time(data, new_user_fraction=0.3, seed=seed)
    except DataError:
        return
    keys = list(data.raw_users)
    new = {keys[u] for u in np.r_[split.valid_users, split.test_users]}
    warm = {k: [i for i, t in v if t < split.cut_time] for k, v in own.items() if k not in new}
    assert_sequences(split.train_sequences(), keys, warm, data)
    assert_sequences(split.new_sequences(), keys,
                     {k: [i for i, _ in v] for k, v in own.items() if k in new}, data)
    assert_new_user_eval_sets(split, keys, own, data)


@settings(max_examples=30, deadline=None)
@given(raw_frames(parts=("train", "test_new_user")), st.integers(0, 3))
def test_cold_start_by_part_sequences_are_each_users_own(frame, seed):
    data, own = as_interactions(frame), own_items(frame, key=("part", "user"))
    split = cold_start_by_part(data, seed=seed)
    # users are numbered in (part, raw id) order, numeric for numeric ids
    keys = sorted(own, key=lambda k: (k[0], k[1] if isinstance(k[1], numbers.Integral) else str(k[1])))
    assert split.n_users == len(keys)
    assert_sequences(split.train_sequences(), keys,
                     {k: [i for i, _ in v] for k, v in own.items() if k[0] == "train"}, data)
    assert_sequences(split.new_sequences(), keys,
                     {k: [i for i, _ in v] for k, v in own.items() if k[0] != "train"}, data)
    assert {keys[u][0] for u in np.r_[split.valid_users, split.test_users]} == {"test_new_user"}
    assert_new_user_eval_sets(split, keys, own, data)


def test_cold_start_by_part_with_two_digit_ids_trains_on_each_users_own_items():
    """Every training user keeps their own items, written out: 12 users per part, ids 1..12, 2..6 items each."""
    def items(user, part):
        return [100 * user + step + (part == "train") * 50 for step in range(2 + user % 5)]

    rows = [(user, item, step, part) for part in ("train", "test_new_user")
            for user in range(1, 13) for step, item in enumerate(items(user, part))]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "part"])
    data = Interactions.from_frame(frame.sample(frac=1, random_state=0), rating=None)
    split = cold_start_by_part(data)
    seqs, new = split.train_sequences(), split.new_sequences()
    for user in range(1, 13):  # numbered in (part, id) order: new users 0..11, then train users
        assert items_of(new, user - 1, data) == items(user, "test_new_user")
        assert items_of(seqs, 12 + user - 1, data) == items(user, "train")


@settings(max_examples=30, deadline=None)
@given(raw_frames(), st.integers(0, 3))
def test_heldout_users_sequences_are_each_users_own(frame, seed):
    data, own = as_interactions(frame), own_items(frame)
    own = {k: [i for i, _ in v] for k, v in own.items()}
    try:
        split = heldout_users(data, n_valid=2, n_test=3, seed=seed)
    except DataError:
        return
    keys = list(data.raw_users)
    held = {keys[u] for ev in (split.valid, split.test) for u in ev.users.tolist()}
    assert_sequences(split.train_sequences(), keys,
                     {k: v for k, v in own.items() if k not in held}, data)
    for ev in (split.valid, split.test):
        for row, key in enumerate(eval_keys(ev, keys)):
            history, targets = items_of(ev.history, row, data), items_of(ev.targets, row, data)
            assert history == [i for i in own[key] if i in history]  # time order, own items
            assert targets == [i for i in own[key] if i in targets]
            assert sorted(history + targets) == sorted(own[key])  # no target in the history


@settings(max_examples=30, deadline=None)
@given(raw_frames(), st.integers(1, 3))
def test_last_n_horizon_sequences_are_each_users_own(frame, n):
    data, own = as_interactions(frame), own_items(frame)
    own = {k: [i for i, _ in v] for k, v in own.items()}
    try:
        split = last_n_horizon(data, n=n)
    except DataError:
        return
    keys = list(data.raw_users)
    assert_sequences(split.train_sequences(), keys,
                     {k: v[:-n] if len(v) > n else v for k, v in own.items()}, data)
    for ev in (split.valid, split.test):
        users = eval_keys(ev, keys)
        assert_sequences(ev.history, users, {k: own[k][:-n] for k in users}, data)
        assert_sequences(ev.targets, users, {k: own[k][-n:] for k in users}, data)


@settings(max_examples=30, deadline=None)
@given(raw_frames())
def test_leave_one_out_sequences_are_each_users_own(frame):
    data, own = as_interactions(frame), own_items(frame)
    own = {k: [i for i, _ in v] for k, v in own.items()}
    try:
        split = leave_one_out(data)
    except DataError:
        return
    keys = list(data.raw_users)
    assert_sequences(split.train_sequences(), keys,
                     {k: v[:-2] if len(v) >= 3 else v for k, v in own.items()}, data)
    users = eval_keys(split.valid, keys)
    assert_sequences(split.valid.history, users, {k: own[k][:-2] for k in users}, data)
    assert_sequences(split.valid.targets, users, {k: own[k][-2:-1] for k in users}, data)
    assert_sequences(split.test.history, users, {k: own[k][:-1] for k in users}, data)
    assert_sequences(split.test.targets, users, {k: own[k][-1:] for k in users}, data)


@settings(max_examples=30, deadline=None)
@given(raw_frames())
def test_sequences_from_rows_in_any_order(frame):
    """`Sequences.from_frame` groups and orders rows itself: users' rows interleaved in any order
    (ties keep their relative order) or fully shuffled (distinct times) give the same sequences."""
    data = as_interactions(frame)
    expected = {k: [i for i, _ in v] for k, v in own_items(frame).items()}
    key = pd.Series(np.random.default_rng(0).random(len(data)))  # random interleaving of users
    key = key.groupby(data.frame["user"]).transform(lambda k: np.sort(k.to_numpy()))
    interleaved = data.frame.iloc[np.argsort(key.to_numpy())]
    assert not interleaved["user"].is_monotonic_increasing
    assert_sequences(Sequences.from_frame(interleaved, data.n_users), list(data.raw_users),
                     expected, data)
    distinct = data.frame.assign(timestamp=np.arange(len(data)))
    a = Sequences.from_frame(distinct, data.n_users)
    b = Sequences.from_frame(distinct.sample(frac=1, random_state=1), data.n_users)
    assert torch.equal(a.items, b.items) and torch.equal(a.offsets, b.offsets)


@pytest.mark.parametrize("n_long", [1, 2, 3])
@pytest.mark.parametrize("valid_fraction", [0.1, 0.5, 0.9])
def test_validation_and_test_each_get_a_user_or_a_clear_error(n_long, valid_fraction):
    """Few users above the horizon: each part still gets one (round(0.5 * 1) = 0 left the
    validation set empty); with a single one, a `DataError` says why."""
    rows = [(user, item, 1, item) for user in range(6) for item in range(1, 5)]
    rows += [(100 + user, item, 1, item) for user in range(n_long) for item in range(1, 13)]
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "rating",
                                                               "timestamp"]))
    if n_long == 1:
        with pytest.raises(DataError, match="at least 2 eligible users.*found 1"):
            last_n_horizon(data, n=10, valid_fraction=valid_fraction)
        return
    split = last_n_horizon(data, n=10, valid_fraction=valid_fraction)
    assert len(split.valid) >= 1 and len(split.test) >= 1
    assert len(split.valid) + len(split.test) == n_long
