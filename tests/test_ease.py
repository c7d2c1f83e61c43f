import numpy as np
import pandas as pd
import pytest
import torch

from coldrec_lib.data import filter_min_counts, heldout_users
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.models.ease import EASE, ease_weights, item_gram
from coldrec_lib.models.popularity import Popularity


def test_closed_form_is_one_ridge_regression_per_item_with_a_zero_diagonal():
    """Column j of B regresses item j on the other items (ridge, ``l2``): the constrained
    problem solved item by item in numpy, against the closed form ``I - P diagMat(1/diag P)``."""
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], float)
    l2 = 0.7
    expected = np.zeros((4, 4))
    for j in range(4):
        others = [i for i in range(4) if i != j]
        a = x[:, others]
        expected[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(3), a.T @ x[:, j])
    weights = ease_weights(torch.tensor(x.T @ x), l2)
    assert torch.equal(weights.diagonal(), torch.zeros(4, dtype=torch.float64))
    assert np.allclose(weights.numpy(), expected, atol=1e-10)
    with pytest.raises(ValueError, match="l2 must be > 0"):
        ease_weights(torch.tensor(x.T @ x), 0.0)


def test_gram_counts_shared_users_and_scores_follow_the_recommender_contract():
    train = pd.DataFrame({"user": [1, 1, 2, 2, 2, 3], "item": [1, 2, 1, 2, 3, 3]})
    gram = item_gram(train, 4, chunk=2)  # chunks of two users add up to the whole X^T X
    assert gram.tolist() == [[2, 2, 1, 0], [2, 2, 1, 0], [1, 1, 2, 0], [0, 0, 0, 0]]
    model = EASE(gram, l2=1.0)
    history = torch.tensor([[0, 1], [2, 3]])  # left-padded item ids
    batch = type("Batch", (), {"history": history})()
    scores = model.score(batch)
    assert scores.shape == (2, 5) and torch.isinf(scores[:, 0]).all()
    assert torch.allclose(scores[0, 1:], model.weights[0])
    assert torch.allclose(scores[1, 1:], model.weights[1] + model.weights[2])
    with pytest.raises(ValueError, match="square item_gram"):
        EASE(torch.zeros(3, 4))


def test_ease_beats_popularity_on_heldout_users(synthetic):
    """Fails for weights that ignore the user's items (EASE then ranks like popularity or worse)."""
    split = heldout_users(filter_min_counts(synthetic, min_user=5), 50, 50, seed=0)
    test = Evaluator(split.test, FullRanking(ks=(100,), recall_denominator="min(k,R)"),
                     split.n_items)
    ease = test.evaluate(EASE(item_gram(split.train, split.n_items), l2=50.0))
    popular = test.evaluate(Popularity(split.train, split.n_items))
    print(f"NDCG@100: EASE {ease.metrics['NDCG@100']:.4f}, popularity "
          f"{popular.metrics['NDCG@100']:.4f}")
    assert ease.metrics["NDCG@100"] > popular.metrics["NDCG@100"] + 0.05
