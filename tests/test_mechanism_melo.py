"""MELO where its mechanism must help (`data/mechanisms/melo.py`): adaptation pays, the learned
loss weights differ by rating value, and MELO should beat MAML++ with its inner step tuned on
validation (the ablation that separates a learned weighting from a bigger step)."""
import pytest
import torch

from coldrec_lib.experiments import melo as experiment


@pytest.fixture(scope="module")
def mechanism():
    torch.set_num_threads(1)
    table = experiment.mechanism(seed=0).to_frame().set_index("model")
    return table, table[(table.index == "MAML++") & (table["selected"] == True)].iloc[0]  # noqa: E712


def test_adaptation_pays_and_melo_weights_differ_by_rating(mechanism):
    table, tuned = mechanism
    # measured, seeds 0 / 1 / 2: User mean - tuned MAML++ RMSE 0.68 / 0.58 / 0.54; spread of
    # MELO's mean weight over rating values 0.67 / 0.27 / 1.36 (a pure step scale gives 0)
    assert tuned["RMSE"] < table.loc["User mean", "RMSE"] - 0.25
    weights = [table.loc["MELO", f"weight@r{r}"] for r in (1, 3, 4, 5)]
    assert max(weights) - min(weights) > 0.1


@pytest.mark.xfail(strict=True, reason="the mechanism has not appeared yet: at 60 meta-iterations "
                   "MELO's weights do not favour the 1-star positions and MELO - tuned MAML++ "
                   "test RMSE is +0.14 / -0.08 / +0.20 (seeds 0 / 1 / 2); at 120 iterations "
                   "(seed 0) -0.017, weight 1.32 on 1-star positions, 1.35 / 0.51 / 0.49 on 4 / 3 / 5")
def test_melo_beats_maml_with_a_tuned_step(mechanism):
    table, tuned = mechanism
    assert tuned["RMSE"] - table.loc["MELO", "RMSE"] > 0.02
    assert table.loc["MELO", "weight@r1"] > 1.5 * max(table.loc["MELO", f"weight@r{r}"]
                                                      for r in (3, 4, 5))
