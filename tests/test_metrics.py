import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec_lib.metrics import rank_candidates, ranking_metrics
from reference_metrics import user_metrics


def metric(scores, relevant, name, k=10, **kw):
    values, _ = ranking_metrics(torch.tensor([scores], dtype=torch.float32),
                                torch.tensor([relevant]), ks=(k,), **kw)
    return float(values[name][0])


def test_hand_worked_example_two_relevant_items():
    scores = [0.9, 0.8, 0.7, 0.6]
    relevant = [False, True, False, True]  # ranking 0,1,2,3 -> hits 0,1,0,1
    assert metric(scores, relevant, "MRR", k=4) == pytest.approx(1 / 2)
    assert metric(scores, relevant, "MRR@2", k=2) == pytest.approx(1 / 2)
    assert metric(scores, relevant, "MRR@1", k=1) == 0.0
    assert metric(scores, relevant, "Recall@2", k=2) == pytest.approx(1 / 2)
    assert metric(scores, relevant, "HR@1", k=1) == 0.0
    ndcg = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert metric(scores, relevant, "NDCG@4", k=4) == pytest.approx(ndcg)
    assert metric(scores, relevant, "MAP@4", k=4) == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_recall_denominator_min_k_r():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    relevant = [True, False, True, True, True]  # 4 relevant, 1 in the top 1
    assert metric(scores, relevant, "Recall@1", k=1) == pytest.approx(1 / 4)
    assert metric(scores, relevant, "Recall@1", k=1, recall_denominator="min(k,R)") == 1.0


def test_ties_are_pessimistic():
    """A constant scorer must get the worst rank, not a lucky first place."""
    n = 50
    relevant = [False] * n
    relevant[0] = True  # the positive sits first among equal scores
    assert metric([1.0] * n, relevant, "MRR") == pytest.approx(1 / n)
    assert metric([1.0] * n, relevant, "HR@10") == 0.0
    # a tie with one other item costs one place
    assert metric([2.0, 2.0, 1.0], [True, False, False], "MRR", k=3) == pytest.approx(1 / 2)


def test_masked_items_rank_last():
    scores = [float("-inf"), 0.1, 0.2]
    assert metric(scores, [False, True, False], "MRR", k=3) == pytest.approx(1 / 2)


def test_rank_candidates_orders_best_first():
    scores = torch.tensor([[0.1, 0.5, 0.3]])
    assert rank_candidates(scores, torch.zeros(1, 3, dtype=torch.bool)).tolist() == [[1, 2, 0]]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="NaN"):
        ranking_metrics(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="at least one relevant"):
        ranking_metrics(torch.tensor([[0.0, 1.0]]), torch.tensor([[False, False]]))
    with pytest.raises(ValueError, match="same shape"):
        ranking_metrics(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.bool))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_independent_implementation(data):
    n_users = data.draw(st.integers(1, 6))
    n_items = data.draw(st.integers(2, 30))
    k = data.draw(st.integers(1, n_items))
    denominator = data.draw(st.sampled_from(["R", "min(k,R)"]))
    # few distinct score values -> many ties
    scores = data.draw(st.lists(st.lists(st.integers(0, 4), min_size=n_items, max_size=n_items),
                                min_size=n_users, max_size=n_users))
    relevant = data.draw(st.lists(st.lists(st.booleans(), min_size=n_items, max_size=n_items)
                                  .filter(any), min_size=n_users, max_size=n_users))
    values, top = ranking_metrics(torch.tensor(scores, dtype=torch.float32),
                                  torch.tensor(relevant), ks=(k,), recall_denominator=denominator)
    for u in range(n_users):
        expected = user_metrics(scores[u], relevant[u], k, denominator)
        for name, value in expected.items():
            assert float(values[name][u]) == pytest.approx(value, abs=1e-6), (name, u)
    assert top.shape == (n_users, k)
