"""What the data policies change downstream: duplicated rows do not move a metric
or put a test target into the fold-in history, and a cold-start user gets recommendations."""
import warnings

import pandas as pd
import pytest
import torch

from coldrec_lib.data import DataError, Interactions, heldout_users, leave_one_out, load_dataset
from coldrec_lib.evaluation import Evaluator, FullRanking, recommend
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
