"""What the data policies change downstream: duplicated rows do not move a metric
or put a test target into the fold-in history, and a cold-start user gets recommendations."""
import math
import warnings

import pandas as pd
import pytest
import torch

from coldrec_lib.data import DataError, Interactions, heldout_users, leave_one_out, load_dataset
from coldrec_lib.evaluation import Evaluator, FullRanking, recommend
from coldrec_lib.models import (BERT4Rec, BERT4RecConfig, BPRMF, BPRMFConfig, GRU4Rec,
                                GRU4RecConfig, MetaTL, MetaTLConfig, MultVAE, MultVAEConfig, NARM,
                                NARMConfig, SASRec, SASRecConfig)
from coldrec_lib.models.gpt2rec import GPT2Rec, GPT2RecConfig
from coldrec_lib.models.popularity import Popularity


def doubled(frame: pd.DataFrame) -> pd.DataFrame:
    """Every row twice, the copies at the end of the file (as `cat u.data u.data`)."""
    return pd.concat([frame, frame], ignore_index=True)


@pytest.fixture(params=["synthetic", "ml-100k"])
def raw_ratings(request, synthetic):
    if request.param == "ml-100k":
        data = load_dataset("ml-100k", path=request.getfixturevalue("ml100k_folder"))
    else:
        data = synthetic
    frame = data.frame.assign(user=data.raw_users[data.frame["user"]],
                              item=data.raw_items[data.frame["item"]])
    return frame[["user", "item", "rating", "timestamp"]]


def popularity_hr10(data: Interactions) -> float:
    split = leave_one_out(data)
    evaluator = Evaluator(split.test, FullRanking(ks=(10,)), split.n_items)
    return evaluator.evaluate(Popularity(split.train, split.n_items)).metrics["HR@10"]


def test_duplicated_rows_leave_popularity_hr_unchanged(raw_ratings):
    original = Interactions.from_frame(raw_ratings)
    with pytest.warns(UserWarning, match=f"dropped {len(raw_ratings):,} duplicate"):
        deduplicated = Interactions.from_frame(doubled(raw_ratings))
    assert deduplicated.n_duplicates_dropped == len(raw_ratings)
    pd.testing.assert_frame_equal(deduplicated.frame, original.frame)
    hr = popularity_hr10(original)
    assert hr > 0 and popularity_hr10(deduplicated) == hr


def test_duplicated_rows_never_put_a_target_in_the_fold_in(raw_ratings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = Interactions.from_frame(doubled(raw_ratings))
    split = heldout_users(data, n_valid=0.1, n_test=0.1, seed=0)
    for eval_set in (split.valid, split.test):
        batch = eval_set.batch(torch.arange(len(eval_set)))
        in_history = (batch.targets.unsqueeze(2) == batch.history.unsqueeze(1)).any(2)
        assert not (in_history & (batch.targets != 0)).any()


# ---------------------------------------------------------------- cold-start recommendations
@pytest.fixture
def shop():
    df = pd.DataFrame({"u": ["a", "a", "b", "b", "c", "c"], "i": ["x", "y", "x", "z", "x", "w"]})
    return Interactions.from_frame(df, user="u", item="i", rating=None, timestamp=None,
                                   item_features=pd.DataFrame({"title": list("WXYZ")},
                                                              index=list("wxyz")))


def test_recommend_for_a_user_never_seen(shop):
    model = Popularity(shop.frame, shop.n_items)
    top = recommend(model, shop, "brand-new-user", k=2, raw_history=["x", "w"])
    assert set(top["item"]) == {"y", "z"}  # what is left, history never recommended
    assert set(top["title"]) == {"Y", "Z"}


def test_recommend_new_user_errors(shop):
    model = Popularity(shop.frame, shop.n_items)
    with pytest.raises(DataError, match="raw_history.*unknown: \\['nope', 'gone'\\]"):
        recommend(model, shop, "brand-new-user", raw_history=["x", "nope", "gone"])
    with pytest.raises(DataError, match="'brand-new-user' is not in the data and no history"):
        recommend(model, shop, "brand-new-user")


def test_recommend_new_user_with_a_per_user_model_says_why(shop):
    class PerUser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.users = torch.nn.Embedding(shop.n_users, shop.n_items + 1)

        def score(self, batch):
            return self.users(batch.users)

    with pytest.raises(ValueError, match="scores only the users it was trained on"):
        recommend(PerUser(), shop, "brand-new-user", raw_history=["x"])
    assert len(recommend(PerUser(), shop, "a", k=1)) == 1


# ---------------------------------------------------------------- recommend: what is left
@pytest.fixture
def catalogue():
    """30 items with titles; user "a" saw the 12 items 101..112, the others two each."""
    rows = [("a", 100 + i) for i in range(1, 13)]
    rows += [(f"u{n}", 100 + (n % 30) + 1) for n in range(40)] + [(f"u{n}", 100 + (n * 7) % 30 + 1)
                                                                for n in range(40)]
    frame = pd.DataFrame(rows, columns=["user", "item"]).drop_duplicates()
    titles = pd.DataFrame({"title": [f"film {i}" for i in range(101, 131)]}, index=range(101, 131))
    return Interactions.from_frame(frame, rating=None, timestamp=None, item_features=titles)


@pytest.mark.parametrize("features", [True, False])
def test_recommend_returns_only_items_outside_the_history(catalogue, features):
    if not features:
        catalogue.item_features = None
    model = Popularity(catalogue.frame, catalogue.n_items)
    with pytest.warns(UserWarning, match="only 18 of 30 items are outside the history of 'a'"):
        top = recommend(model, catalogue, "a", k=25)
    assert len(top) == 18 and set(top["item"]) == set(range(113, 131))
    assert top["score"].map(math.isfinite).all()
    if features:
        assert list(top["title"]) == [f"film {i}" for i in top["item"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(recommend(model, catalogue, "a", k=18)) == 18


def small_models(data):
    n_items, sequential = data.n_items, {"max_len": 8, "dim": 8}
    return {
        "popularity": lambda: Popularity(data.frame, n_items),
        "BPR-MF": lambda: BPRMF(data.n_users, n_items, BPRMFConfig(dim=8)),
        "Mult-VAE": lambda: MultVAE(n_items, MultVAEConfig(hidden_dims=(8,), latent_dim=4)),
        "GRU4Rec": lambda: GRU4Rec(n_items, GRU4RecConfig(**sequential)),
        "NARM": lambda: NARM(n_items, NARMConfig(**sequential)),
        "SASRec": lambda: SASRec(n_items, SASRecConfig(**sequential)),
        "BERT4Rec": lambda: BERT4Rec(n_items, BERT4RecConfig(**sequential)),
        "GPT-2": lambda: GPT2Rec(n_items, GPT2RecConfig(context=8, dim=8, n_layers=1)),
        "MetaTL": lambda: MetaTL(n_items, MetaTLConfig(dim=8, hidden=(8,))),
    }


@pytest.mark.parametrize("name, needed", [
    ("popularity", 0), ("BPR-MF", 0), ("Mult-VAE", 0), ("GRU4Rec", 1), ("NARM", 1), ("SASRec", 1),
    ("BERT4Rec", 1), ("GPT-2", 1), ("MetaTL", 2)])
def test_recommend_with_an_empty_history(catalogue, name, needed):
    """Models that predict from the history refuse a history too short for them with one clear
    error; the others recommend from nothing, as for any history."""
    torch.manual_seed(0)
    model = small_models(catalogue)[name]()
    if needed == 0:
        assert len(recommend(model, catalogue, "a", k=10, raw_history=[])) == 10
        return
    history = [101, 102, 103][:needed]
    for short in ([], history[:-1]):
        with pytest.raises(DataError, match=f"'raw_history': expected at least {needed} item.*"
                                            f"{type(model).__name__} predicts from the history"):
            recommend(model, catalogue, "a", k=10, raw_history=short)
    top = recommend(model, catalogue, "a", k=10, raw_history=history)
    assert len(top) == 10 and not set(top["item"]) & set(history)
    assert model.min_history == needed
