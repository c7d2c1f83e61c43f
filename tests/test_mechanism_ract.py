"""RaCT's mechanism (`04_ract`, section "Where the mechanism must help"): on data where the
likelihood spends a small actor on heavy users, stage 3 (the actor maximising the critic) must
raise validation NDCG@100 over the converged stage-1 actor."""
import torch

from coldrec_lib.data.mechanisms.ract import run_mechanism


def test_stage3_raises_ndcg_over_converged_actor():
    torch.set_num_threads(1)
    gains = []
    for seed in range(3):
        trainer = run_mechanism(seed)
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
