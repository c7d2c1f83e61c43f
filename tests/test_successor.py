"""The most-frequent-successor baseline: transitions counted on the training sequences."""
import pandas as pd
import torch

from coldrec_lib.data import EvalBatch
from coldrec_lib.data.mechanisms.generation import make_chains
from coldrec_lib.data.splits import last_n_horizon
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.models.popularity import Popularity
from coldrec_lib.models.successor import MostFrequentSuccessor


def batch_of(last_items: list[int]) -> EvalBatch:
    """Histories whose last item is ``last_items[b]`` (left-padded, as the evaluator builds
    them)."""
    history = torch.tensor([[0, item] for item in last_items])
    return EvalBatch(torch.arange(len(last_items)), history, torch.ones(len(last_items), 1,
                                                                        dtype=torch.long))


def test_counts_successors_within_users_in_time_order():
    # user 0: 1 2 3 (given out of time order), user 1: 1 2 4, user 2: 3 1 4 (3 -> 1 once);
    # 3 -> 1 across users 0 and 2 is not a transition
    train = pd.DataFrame({"user": [0, 0, 0, 1, 1, 1, 2, 2, 2],
                          "item": [3, 1, 2, 1, 2, 4, 3, 1, 4],
                          "timestamp": [3, 1, 2, 1, 2, 3, 1, 2, 3]})
    model = MostFrequentSuccessor(train, n_items=5)
    counts = model.successor_counts(torch.tensor([1, 2, 3, 4, 0]))
    assert counts.tolist() == [[0, 0, 2, 0, 1, 0],   # 1 -> 2 twice, 1 -> 4 once
                               [0, 0, 0, 1, 1, 0],   # 2 -> 3, 2 -> 4
                               [0, 1, 0, 0, 0, 0],   # 3 -> 1
                               [0, 0, 0, 0, 0, 0],   # 4: never followed
                               [0, 0, 0, 0, 0, 0]]   # PAD
    scores = model.score(batch_of([1, 4]))
    # successors first by count; the rest (and item 4's row) by popularity: 1 (3) > 2, 3, 4 (2)
    assert scores[0].argsort(descending=True)[:2].tolist() == [2, 4]
    assert int(scores[1, 1:].argmax()) + 1 == 1


def test_beats_popularity_where_transitions_are_deterministic():
    data = make_chains(n_users=300, n_items=100, min_len=20, max_len=30, follow=1.0, seed=0)
    split = last_n_horizon(data, n=1, valid_fraction=0.5, seed=0)
    test = Evaluator(split.test, FullRanking(ks=(10,)), split.n_items)
    successor = test.evaluate(MostFrequentSuccessor(split.train, split.n_items)).metrics
    popularity = test.evaluate(Popularity(split.train, split.n_items)).metrics
    # every next item is its last item's main successor: always first in the ranking
    assert successor["HR@10"] == 1.0 and successor["NDCG@10"] == 1.0
    assert popularity["NDCG@10"] < 0.3
