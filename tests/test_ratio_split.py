"""RecBole's random 8:1:1 split and its test protocol (the model reads the training items, the
ranking excludes training and validation items), property-tested on realistic data."""
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.data import PAD, DataError, Interactions, random_ratio_split
from coldrec_lib.data.splits import ratio_counts
from coldrec_lib.evaluation import Evaluator, FullRanking, SampledRanking
from coldrec_lib.models.base import Recommender


@st.composite
def interactions(draw):
    n_users = draw(st.integers(1, 6))
    rows = []
    for u in range(n_users):
        n = draw(st.integers(1, 25))
        raw_user = draw(st.sampled_from(["u", "user-", ""])) + str(10 + 7 * u)  # string ids
        items = draw(st.lists(st.integers(10, 60), min_size=n, max_size=n, unique=True))
        times = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))  # ties
        rows += [(raw_user, item, t) for item, t in zip(items, times)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return Interactions.from_frame(frame.sample(frac=1.0, random_state=draw(st.integers(0, 9))),
                                   rating=None)


def recbole_counts(tot, ratios):
    """RecBole 1.2.1's ``_calcu_split_ids``, transcribed (plain Python)."""
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.3, 0.0)])
def test_counts_match_recbole(ratios):
    n = np.arange(1, 60)
    expected = np.array([recbole_counts(int(t), list(ratios)) for t in n])
    assert np.array_equal(ratio_counts(n, ratios), expected)


def as_pairs(frame):
    return sorted(zip(frame["user"].tolist(), frame["item"].tolist()))


@settings(max_examples=50, deadline=None)
@given(data=interactions(), seed=st.integers(0, 3))
def test_split_partitions_each_user_and_builds_recbole_test_sets(data, seed):
    frame = data.frame
    n = frame.groupby("user").size()
    if (n < 3).all() or ratio_counts(n.to_numpy(), (0.8, 0.1, 0.1))[:, 1:].sum() == 0:
        with pytest.raises(DataError):
            random_ratio_split(data, seed=seed)
        return
    try:
        split = random_ratio_split(data, seed=seed)
    except DataError:  # no user has both a validation and a test item
        counts = ratio_counts(n.to_numpy(), (0.8, 0.1, 0.1))
        assert counts[:, 1].sum() == 0 or counts[:, 2].sum() == 0
        return
    valid_t, test_t, test_x = ([], [], [])
    for part, store in ((split.valid.targets, valid_t), (split.test.targets, test_t)):
        users = split.valid.users if store is valid_t else split.test.users
        for row, user in enumerate(users.tolist()):
            store += [(user, int(i)) for i in part.items[part.offsets[row]:part.offsets[row + 1]]]
    for row, user in enumerate(split.test.users.tolist()):
        x = split.test.excluded
        test_x += [(user, int(i)) for i in x.items[x.offsets[row]:x.offsets[row + 1]]]
    train = as_pairs(split.train)
    # a partition of every user's interactions, in RecBole's proportions
    assert sorted(train + valid_t + test_t) == as_pairs(frame)
    expected = ratio_counts(n.to_numpy(), (0.8, 0.1, 0.1))
    got = np.stack([np.bincount([u for u, _ in part], minlength=data.n_users)
                    for part in (train, valid_t, test_t)], 1)
    assert np.array_equal(got, expected)
    # test: the model reads exactly the training items; the validation items are excluded
    assert sorted(test_x) == sorted(p for p in valid_t if p[0] in set(split.test.users.tolist()))
    for row, user in enumerate(split.test.users.tolist()):
        h = split.test.history
        history = h.items[h.offsets[row]:h.offsets[row + 1]].tolist()
        assert sorted(history) == sorted(i for u, i in train if u == user)
    # seeded: the same seed gives the same split
    again = random_ratio_split(data, seed=seed)
    assert as_pairs(again.train) == train


def test_bad_ratios_get_clear_errors(synthetic):
    with pytest.raises(ValueError, match="summing to 1"):
        random_ratio_split(synthetic, (0.8, 0.1, 0.2))


class Memorizer(Recommender):
    """Scores each user's validation items highest: what a leaky model would do."""

    def __init__(self, split, n_items):
        super().__init__()
        self.scores = torch.zeros(split.n_users, n_items + 1)
        for row, user in enumerate(split.valid.users.tolist()):
            t = split.valid.targets
            self.scores[user, t.items[t.offsets[row]:t.offsets[row + 1]]] = 10.0

    def score(self, batch):
        return self.scores[batch.users]


def test_recbole_protocol_reads_training_items_and_excludes_validation_items(synthetic):
    split = random_ratio_split(synthetic, seed=0)
    model = Memorizer(split, synthetic.n_items)
    seen = Evaluator(split.test, FullRanking(ks=(10,)), synthetic.n_items)
    unmasked = Evaluator(split.test, FullRanking(ks=(10,), mask_history=False), synthetic.n_items)
    history_only = Evaluator(split.test, FullRanking(ks=(10,), mask_excluded=False),
                             synthetic.n_items)
    # masked, the validation items score -inf; otherwise the leaky model puts them on top
    batch = split.test.batch(torch.arange(len(split.test)))
    for evaluator, leaks in ((seen, False), (unmasked, True), (history_only, True)):
        scores = evaluator._score(model, batch, torch.arange(len(split.test)))[0]
        at_valid = scores.gather(1, batch.excluded)[batch.excluded != PAD]
        assert torch.isinf(at_valid).all() != leaks
    assert "input: the user's history" in seen.describe()
    assert "masked: the whole history and the set's other seen items" in seen.describe()
    assert "nothing masked" in unmasked.describe()
    assert "set's other seen items" not in history_only.describe()
    # sampled negatives never include an excluded (validation) item
    sampled = Evaluator(split.test, SampledRanking(n_negatives=20), synthetic.n_items)
    for row in range(len(split.test)):
        x = split.test.excluded
        excluded = set(x.items[x.offsets[row]:x.offsets[row + 1]].tolist())
        assert not excluded & set(sampled.negatives[row].tolist())
