"""Each paper's mechanism where it must help: synthetic data built so that the paper's idea helps
if implemented right (`coldrec_lib.data.mechanisms`), trained on the CPU with one torch thread.
The notebooks show the same settings in their section "Where the mechanism must help"."""
import pandas as pd
import pytest
import torch

from coldrec_lib.experiments import cmml, generation, melo, metatl, ract


# ---------------------------------------------------------------------- metatl
# MetaTL where its inner step should help: new users who walk through item space by personal
# translations that their K items reveal (`make_translation_synthetic`).
def test_metatl_inner_step_does_not_beat_its_ablation_on_personal_translations():
    """Measured on seeds 0, 1, 2 (one CPU thread, ~50 s a seed): full-catalogue test MRR of the
    ablation 0.444 / 0.477 / 0.461, MetaTL minus the ablation -0.158 / -0.199 / -0.140 (two
    standard errors 0.037 / 0.040 / 0.039), MetaTL minus itself with beta = 0 at test -0.027 /
    -0.019 / -0.002 (2 SE 0.021 / 0.019 / 0.018); the step moves 65-67 % of the test users, by
    0.67-0.68 of an item embedding's norm on average. The relation learner alone reads the
    personal translation from the K items; the inner step, as large as it is, does not help."""
    torch.set_num_threads(1)
    run = metatl.run_mechanism(seed=0)
    ablation = run.results[metatl.ABLATION, "full"].metrics["MRR"]
    assert ablation > 0.3  # the setting is learnt: 1 / MRR is a rank of ~2 among ~600 items
    for history in run.histories.values():  # stopped by patience, not by the cap
        assert history.best_epoch + metatl.MECHANISM["patience"] \
            <= metatl.MECHANISM["max_epochs"]

    difference, noise = run.margin("full")
    assert difference + noise < -0.05, (difference, noise)  # behind its ablation, beyond noise

    test_set = metatl.make_evaluators(run.split, 3, "test", "cpu")["full"].eval_set
    sizes = metatl.inner_step_sizes(run.models["MetaTL"], test_set)
    assert sizes["step norm"] > 0.3 * sizes["item norm"], sizes  # the step is not negligible
    assert sizes["moved share"] > 0.4, sizes
    with_step, noise = metatl.paired_difference(run.results["MetaTL", "full"],
                                                    run.results[metatl.NO_TEST_STEP, "full"])
    assert with_step < noise, (with_step, noise)  # nor does it help at test time


# ---------------------------------------------------------------------- melo
# MELO where its mechanism must help (`data/mechanisms/melo.py`): adaptation pays, the learned
# loss weights differ by rating value, and MELO should beat MAML++ with its inner step tuned on
# validation (the ablation that separates a learned weighting from a bigger step).
@pytest.fixture(scope="module")
def melo_mechanism():
    torch.set_num_threads(1)
    table = melo.mechanism(seed=0).to_frame().set_index("model")
    return table, table[(table.index == "MAML++") & (table["selected"] == True)].iloc[0]  # noqa: E712


def test_adaptation_pays_and_melo_weights_differ_by_rating(melo_mechanism):
    table, tuned = melo_mechanism
    # measured, seeds 0 / 1 / 2: User mean - tuned MAML++ RMSE 0.68 / 0.58 / 0.54; spread of
    # MELO's mean weight over rating values 0.67 / 0.27 / 1.36 (a pure step scale gives 0)
    assert tuned["RMSE"] < table.loc["User mean", "RMSE"] - 0.25
    weights = [table.loc["MELO", f"weight@r{r}"] for r in (1, 3, 4, 5)]
    assert max(weights) - min(weights) > 0.1


@pytest.mark.xfail(strict=True, reason="the mechanism has not appeared yet: at 60 meta-iterations "
                   "MELO's weights do not favour the 1-star positions and MELO - tuned MAML++ "
                   "test RMSE is +0.14 / -0.08 / +0.20 (seeds 0 / 1 / 2); at 120 iterations "
                   "(seed 0) -0.017, weight 1.32 on 1-star positions, 1.35 / 0.51 / 0.49 on 4 / 3 / 5")
def test_melo_beats_maml_with_a_tuned_step(melo_mechanism):
    table, tuned = melo_mechanism
    assert tuned["RMSE"] - table.loc["MELO", "RMSE"] > 0.02
    assert table.loc["MELO", "weight@r1"] > 1.5 * max(table.loc["MELO", f"weight@r{r}"]
                                                      for r in (3, 4, 5))


# ---------------------------------------------------------------------- cmml
# CMML and s2Meta where the mechanism must help: scenarios of four modes that a few support pairs
# reveal (`coldrec_lib.data.mechanisms.cmml`). CMML must read the mode off the support (its own
# context beats another scenario's), beat first-order MAML, and the learned optimiser must beat
# the global model, which beats support popularity.
def test_cmml_context_reads_the_scenario_mode():
    torch.set_num_threads(1)
    table, _, _ = cmml.run_mechanism(seed=0)
    recall = table.to_frame(["Recall@10"]).set_index("model")["Recall@10"]
    print(recall.round(4).to_dict())
    own_context = recall[next(iter(cmml.CMML_VARIANTS))]
    # test Recall@10 with 8 support pairs, lr 3e-3, 400 updates, each model from its own
    # generator, seed 0: CMML 0.580, another scenario's context 0.354, first-order MAML 0.516,
    # s2Meta 0.541, global 0.416, support popularity 0.255 (with one generator shared by the
    # models, seeds 0 / 1: own - other context +0.22 / +0.10, CMML - MAML +0.035 / +0.065).
    # About 250 s on one thread, most of it s2Meta
    assert own_context > recall["CMML, another scenario's context"] + 0.05
    assert own_context > recall["MAML (first order)"]
    assert recall["s2Meta"] > recall["Global MLP"]
    assert recall["Global MLP"] > recall["Support popularity"] + 0.08


# ---------------------------------------------------------------------- ract
# RaCT's mechanism (`04_ract`, section "Where the mechanism must help"): on data where the
# likelihood spends a small actor on heavy users, stage 3 (the actor maximising the critic) must
# raise validation NDCG@100 over the converged stage-1 actor.
def test_stage3_raises_ndcg_over_converged_actor():
    torch.set_num_threads(1)
    gains = []
    for seed in range(3):
        trainer = ract.run_mechanism(seed)
        stage1, stage3 = trainer.results[1], trainer.results[3]
        # stage 1 stopped by its patience after its validation best, not by its epoch cap
        assert stage1.best_epoch + trainer.config.patience == len(stage1.history)
        assert len(stage1.history) < trainer.config.actor_epochs
        gains.append(stage3.best_value - stage1.best_value)
    # measured gains in validation NDCG@100, seeds 0-4: 0.097, 0.065, 0.079, 0.072, 0.108 (35 s
    # for seeds 0-2 on one thread); an actor trained on the taste users alone reaches about 0.58
    # against the stage-1 actor's 0.30-0.34: stage 3 gets part of what re-weighting can give.
    # Against stage 1 trained all 300 epochs without early stopping (best 0.346, 0.303, 0.353)
    # stage 3 still gains 0.070, 0.065, 0.069.
    assert min(gains) > 0.02, gains
    assert sum(gains) / len(gains) > 0.04, gains


# ---------------------------------------------------------------------- generation
# Item chains: generating the horizon item by item must beat one-pass top-K beyond position 1.
def test_generation_beats_one_pass_top_k_on_positions_2_to_10():
    # mean hit rate over horizon positions 2-10, GPT-2 on the chains (CHAINS), one thread:
    # top-K 0.136 / 0.132 / 0.129 (seeds 0 / 1 / 2); greedy, beam search and RRA 0.45-0.48,
    # ahead of top-K by 0.314 or more in every seed. ~30 s on an idle core.
    run = generation.run_chains(seed=0)
    hits = pd.DataFrame(run.rows).set_index("strategy")[[f"hit p{j}" for j in range(2, 11)]]
    later = hits.mean(axis=1)
    assert run.fit.best_epoch + generation.CHAINS["patience"] <= generation.CHAINS["max_epochs"]
    for strategy in later.index.drop("top-K"):
        assert later[strategy] > later["top-K"] + 0.15, (strategy, later.to_dict())
    # why: one pass ranks the next main successor in its top 10 (98 % of users, seed 0), but
    # the chain from its third step on no better than chance (0.2-6 % per step)
    in_top = (generation.chain_ranks(run) <= 10).float().mean(0)
    assert in_top[0] > 0.8 and in_top[2:].max() < 0.25, in_top.tolist()
