"""Sliding windows (data/windows.py) and the batches built on them, property-tested on realistic
data: two-digit and string ids, shuffled rows, tied timestamps."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import PAD, DataError, Interactions, Sequences
from coldrec_lib.data.windows import sliding_windows
from coldrec_lib.models.sequential import cloze_batches, next_item_batches


@st.composite
def interactions(draw):
    n_rows = draw(st.integers(1, 60))
    users = draw(st.lists(st.sampled_from(["u7", "u13", "42", "alice", "u99"]),
                          min_size=n_rows, max_size=n_rows))
    items = draw(st.lists(st.integers(10, 99), min_size=n_rows, max_size=n_rows))
    times = draw(st.lists(st.integers(0, 5), min_size=n_rows, max_size=n_rows))  # many ties
    frame = pd.DataFrame({"user": users, "item": [f"i{i}" for i in items], "timestamp": times})
    frame = frame.sample(frac=1.0, random_state=draw(st.integers(0, 99)))  # shuffled rows
    return Interactions.from_frame(frame, rating=None)


def user_items(data: Interactions) -> dict[int, list[int]]:
    """Each user's items in time order, straight from the sorted frame."""
    return {u: g["item"].tolist() for u, g in data.frame.groupby("user")}


@settings(max_examples=60, deadline=None)
@given(data=interactions(), length=st.integers(1, 7), stride_fraction=st.floats(0.01, 1.0),
       first=st.integers(0, 2))
def test_windows_are_contiguous_slices_and_own_every_item_once(data, length, stride_fraction,
                                                              first):
    stride = max(1, int(round(stride_fraction * length)))
    sequences = Sequences.from_frame(data.frame, data.n_users)
    expected = user_items(data)
    if all(len(v) <= first for v in expected.values()):
        with pytest.raises(DataError):
            sliding_windows(sequences, length, stride, first)
        return
    windows = sliding_windows(sequences, length, stride, first)
    items = windows.take(sequences.items)
    owned = Counter()
    for user, row, index, own in zip(windows.users.tolist(), items.tolist(),
                                     windows.index.tolist(), windows.owned.tolist()):
        real = [i for i in row if i != PAD]
        n_pad = length - len(real)
        assert row[:n_pad] == [PAD] * n_pad and PAD not in row[n_pad:]  # left-padded
        sequence = expected[user]
        start = index[n_pad] - int(sequences.offsets[user])
        assert real == sequence[start:start + len(real)]  # a contiguous slice, in time order
        assert not any(own[:n_pad])
        owned.update((user, start + j - n_pad) for j in range(n_pad, length) if own[j])
    wanted = Counter((u, p) for u, seq in expected.items() if len(seq) > first
                     for p in range(first, len(seq)))
    assert owned == wanted  # every interaction from `first` on is owned exactly once


@settings(max_examples=40, deadline=None)
@given(data=interactions(), max_len=st.integers(1, 6), stride=st.integers(1, 6))
def test_next_item_batches_make_every_item_but_the_first_a_target_once(data, max_len, stride):
    stride = min(stride, max_len)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    expected = user_items(data)
    if all(len(v) < 2 for v in expected.values()):
        return
    batches = list(next_item_batches(sequences, max_len, 4, torch.Generator().manual_seed(0),
                                     stride=stride))
    pairs = Counter()
    for inputs, targets in batches:
        for row_in, row_t in zip(inputs.tolist(), targets.tolist()):
            for t, target in enumerate(row_t):
                if target != PAD:
                    assert row_in[t] != PAD  # a target always has its previous item as input
                    pairs[(tuple(i for i in row_in[:t + 1] if i != PAD), target)] += 1
    # the targets are exactly each user's items after the first, each once, and the input
    # before each is the end of that user's sequence up to it
    n_targets = sum(max(0, len(seq) - 1) for seq in expected.values())
    assert sum(pairs.values()) == n_targets
    for (context, target), _ in pairs.items():
        assert any(any(seq[p] == target and tuple(seq[max(0, p - len(context)):p]) == context
                       for p in range(1, len(seq))) for seq in expected.values())


def test_cloze_masks_only_owned_items_and_at_least_one_per_window():
    sequences = Sequences(torch.arange(1, 41), torch.tensor([0, 3, 40]))
    mask = 99
    batches = list(cloze_batches(sequences, 8, 100, torch.Generator().manual_seed(0), mask,
                                 mask_prob=0.3, stride=4))
    inputs, targets = batches[0]
    masked = inputs == mask
    assert torch.equal(masked, targets != PAD)
    assert masked.any(1).all()
    rate = masked.sum() / (inputs != PAD).sum()
    assert 0.1 < float(rate) < 0.5
    # a user's items are masked at most once per epoch: each item is owned by one window
    counts = Counter(targets[targets != PAD].tolist())
    assert max(counts.values()) == 1


def test_bad_window_arguments_get_clear_errors():
    sequences = Sequences(torch.arange(1, 5), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="stride <= length"):
        sliding_windows(sequences, 3, stride=4)
    with pytest.raises(DataError, match="more than first=5"):
        sliding_windows(sequences, 3, first=5)
    assert np.array_equal(sliding_windows(sequences, 3, last_only=True).owned.numpy(),
                          np.ones((1, 3), dtype=bool))
