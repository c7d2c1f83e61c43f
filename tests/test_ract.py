import copy
import math

import pytest
import torch

from coldrec_lib.evaluation import EvalResult, Evaluator
from coldrec_lib.experiments import ract as experiment
from coldrec_lib.metrics import ranking_metrics, top_k_ndcg
from coldrec_lib.models.multvae import MultVAE, MultVAEConfig
from coldrec_lib.models.ract import (ActorCriticTraining, Critic, CriticConfig, RaCTConfig,
                                     critic_inputs, critic_loss)
from coldrec_lib.training import seed_everything
from reference_metrics import ndcg_or_zero


def per_user_ndcg(scores, relevant, k):
    """Reference: one user at a time, in plain Python (tests/reference_metrics.py)."""
    return torch.tensor([ndcg_or_zero(s, r, k) for s, r in zip(scores.tolist(),
                                                               relevant.tolist())])


def test_batched_ndcg_target_equals_the_per_user_reference():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 300, generator=generator)
    share = torch.rand(64, 1, generator=generator) * 0.3  # users hold out 0-30 % of the items
    relevant = torch.rand(64, 300, generator=generator) < share
    relevant[0] = False  # a user with nothing held out gets 0
    relevant[1] = True   # more relevant items than k
    kept = torch.rand(64, 300, generator=generator) < 0.3
    scores = scores.masked_fill(kept & ~relevant, float("-inf"))  # masked input items
    for k in (1, 10, 100):
        batched = top_k_ndcg(scores, relevant, k)
        assert torch.allclose(batched, per_user_ndcg(scores, relevant, k), atol=1e-6)
    assert batched[0] == 0 and batched[1] == pytest.approx(1.0)


def test_batched_ndcg_is_the_library_ndcg():
    """One NDCG definition: it equals `ranking_metrics`' NDCG@k, ties included."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (32, 200), generator=generator).float()  # many ties
    relevant = torch.rand(32, 200, generator=generator) < 0.1
    relevant[:, 0] = True
    values, _ = ranking_metrics(scores, relevant, ks=(20, 100))
    for k in (20, 100):
        assert torch.allclose(top_k_ndcg(scores, relevant, k), values[f"NDCG@{k}"], atol=1e-6)


def test_ndcg_target_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        top_k_ndcg(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_ndcg(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), 0)


def test_critic_features_and_target():
    seed_everything(0)
    actor = MultVAE(30, MultVAEConfig(hidden_dims=(16,), latent_dim=4)).eval()
    x = (torch.rand(8, 30) < 0.4).float()
    mask = torch.bernoulli(torch.full_like(x, 0.5))
    features, target = critic_inputs(actor, x, mask, k=10)
    assert torch.equal(features[:, 0], (x * mask).sum(1))
    assert torch.equal(features[:, 1], (x * (1 - mask)).sum(1))
    logits = actor(x, mask)[0]
    log_p = torch.log_softmax(logits, 1)
    # by default the NLL covers the whole row, kept and held-out items (the authors' code)
    assert torch.allclose(features[:, 2], -(log_p * x).sum(1))
    held_out_only = critic_inputs(actor, x, mask, k=10, nll_items="held-out")[0]
    assert torch.allclose(held_out_only[:, 2], -(log_p * x * (1 - mask)).sum(1))
    assert torch.equal(held_out_only[:, :2], features[:, :2])
    ranking = logits.masked_fill(x * mask > 0, float("-inf"))
    assert torch.allclose(target, per_user_ndcg(ranking, x * (1 - mask) > 0, 10), atol=1e-6)
    assert not target.requires_grad and features.requires_grad


def test_critic_batchnorm_statistics_do_not_change_after_freezing():
    seed_everything(0)
    critic = Critic().train()
    critic(torch.randn(64, 3) * 5 + 2)  # stage 2: the statistics follow the data
    assert not torch.allclose(critic.norm.running_mean, torch.zeros(3))
    critic.freeze_feature_statistics()
    before = {k: v.clone() for k, v in critic.norm.state_dict().items()}
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(3):  # stage 3: the critic keeps training in training mode
        loss = critic_loss(critic, torch.randn(64, 3) * 10 - 4, torch.rand(64))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = critic.norm.state_dict()
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["weight"], after["weight"])  # its affine part still learns


def test_stage3_critic_gradient_is_its_mse_only_and_the_actor_follows_the_critic():
    seed_everything(0)
    actor = MultVAE(20, MultVAEConfig(hidden_dims=(8,), latent_dim=4))
    critic = Critic(CriticConfig(hidden_dims=(8, 4)))
    critic.freeze_feature_statistics()
    x = (torch.rand(16, 20) < 0.5).float()
    seed_everything(1)
    ActorCriticTraining(actor, critic).loss(x).backward()
    combined = [p.grad.clone() for p in critic.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters()
               if p.dim() == 2)
    critic.zero_grad()
    seed_everything(1)  # same input mask and eps
    features, target = critic_inputs(actor, x, actor.draw_keep_mask(x), critic.config.k)
    critic_loss(critic, features, target).backward()
    for mixed, alone in zip(combined, (p.grad for p in critic.parameters())):
        assert torch.allclose(mixed, alone, atol=1e-7)


def test_critic_rejects_wrong_features():
    with pytest.raises(ValueError, match="features"):
        Critic()(torch.zeros(4, 2))


# ---------------------------------------------------------------------- the pipeline
TINY = {"synthetic": dict(n_users=300, n_items=150), "n_valid": 40, "n_test": 40,
        "min_rating": None,
        "ract": dict(actor=dict(hidden_dims=(32,), latent_dim=8, batch_size=50, anneal_steps=100),
                     critic=dict(hidden_dims=(16, 8), lr=1e-3), actor_epochs=4, critic_epochs=3,
                     critic_min_epochs=2,
                     finetune_epochs=3, finetune_lr=1e-3, patience=10)}


def tiny_trainer(checkpoint_dir, seed=0):
    config = RaCTConfig(**TINY["ract"])
    _, split = experiment.load_split("synthetic", TINY, seed=0)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    return experiment.make_trainer(split, config, valid, seed, checkpoint_dir=checkpoint_dir)


def without_timings(result):
    return [{k: v for k, v in row.items() if k not in ("seconds", "elapsed")}
            for row in result.history]


def test_resuming_from_a_stage_checkpoint_equals_running_straight_through(tmp_path):
    straight = tiny_trainer(tmp_path / "straight")
    straight.run()
    interrupted = tiny_trainer(tmp_path / "resumed")
    interrupted.run(until=2)
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["stage1.pt", "stage2.pt"]
    resumed = tiny_trainer(tmp_path / "resumed")  # a new process would start like this
    resumed.run()
    # stages 1 and 2 are loaded (their timings too), stage 3 trains to the same numbers
    assert resumed.results[2].history == interrupted.results[2].history
    assert without_timings(resumed.results[3]) == without_timings(straight.results[3])
    for a, b in zip(straight.actor.state_dict().values(), resumed.actor.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.critic.state_dict().values(), resumed.critic.state_dict().values()):
        assert torch.equal(a, b)
    assert bool(resumed.critic.stats_frozen)
    # every stage ran and kept its best epoch on validation
    assert straight.results[1].best_value == max(
        r["valid NDCG@100"] for r in straight.results[1].history)
    assert straight.results[3].best_value >= straight.results[1].best_value


def test_checkpoints_of_another_configuration_are_refused(tmp_path):
    tiny_trainer(tmp_path).run(until=1)
    other = tiny_trainer(tmp_path, seed=1)
    with pytest.raises(ValueError, match="different run .*seed"):
        other.run_stage(1)
    with pytest.raises(RuntimeError, match="stage 3 starts from stage 2"):
        tiny_trainer(tmp_path / "empty").run_stage(3)
    with pytest.raises(ValueError, match="stage must be one of"):
        tiny_trainer(None).run_stage(4)


def test_critic_batchnorm_statistics_are_the_cumulative_average_of_the_stage():
    """Not an exponential average: every stage-2 batch counts the same, the first as the last."""
    generator = torch.Generator().manual_seed(0)
    critic = Critic().train()
    batches = [torch.randn(n, 3, generator=generator) * scale + shift
               for n, scale, shift in ((50, 1.0, 0.0), (30, 4.0, 10.0), (70, 0.5, -3.0),
                                       (40, 2.0, 5.0))]
    for batch in batches:
        critic(batch)
    assert torch.allclose(critic.norm.running_mean,
                          torch.stack([b.mean(0) for b in batches]).mean(0), atol=1e-5)
    assert torch.allclose(critic.norm.running_var,
                          torch.stack([b.var(0) for b in batches]).mean(0), atol=1e-4)
    critic.eval()  # validation normalises with those statistics
    x = batches[0][:5]
    expected = (x - critic.norm.running_mean) / (critic.norm.running_var + critic.norm.eps).sqrt()
    h = expected * critic.norm.weight + critic.norm.bias
    for layer in critic.layers[:-1]:
        h = torch.relu(layer(h))
    assert torch.allclose(critic(x), torch.sigmoid(critic.layers[-1](h)).squeeze(1), atol=1e-6)


class ScriptedCriticValidation:
    """Stands in for `CriticValidation`: returns a fixed sequence of R^2 values and records the
    critic's weights at every evaluation."""

    def __init__(self, values):
        self.values, self.states = list(values), []

    def evaluate(self, model):
        self.states.append({k: v.clone() for k, v in model.critic.state_dict().items()})
        return EvalResult("critic", "scripted", "valid", 1,
                          {"critic R2": self.values[len(self.states) - 1]}, {})


def test_stage2_trains_past_a_negative_start_to_a_plateau_and_keeps_the_last_critic(tmp_path):
    """R^2 negative (and falling) in the first epochs, as in some ML-100K seeds, must not make
    early stopping keep epoch 1, a near-constant critic: stage 2 trains at least
    ``critic_min_epochs`` and stops only once R^2 has plateaued, keeping the last critic."""
    r2 = [-0.2, -0.3, -0.4, -0.5, -0.3, 0.1, 0.3, 0.4, 0.41, 0.411, 0.41, 0.409] + [0.0] * 20
    settings = {**TINY["ract"], "critic_epochs": 30, "critic_min_epochs": 8, "patience": 3,
                "critic_min_delta": 0.002}
    trainer = tiny_trainer(None)
    trainer.config = RaCTConfig(**settings)
    trainer.run_stage(1)
    trainer.critic_valid = scripted = ScriptedCriticValidation(r2)
    result = trainer.run_stage(2)
    # epoch 9 is the last rise above 0.002; three epochs without one, past the minimum: stop
    assert len(result.history) == 12 and result.best_epoch == 12
    assert result.best_value == pytest.approx(0.409)
    for key, value in trainer.critic.state_dict().items():
        if key != "stats_frozen":
            assert torch.equal(value, scripted.states[-1][key]), key
    assert not torch.equal(trainer.critic.layers[0].weight, scripted.states[0]["layers.0.weight"])
    assert bool(trainer.critic.stats_frozen)
    with pytest.raises(ValueError, match="critic_min_epochs"):
        RaCTConfig(critic_min_epochs=0)


def test_selection_metric_is_a_parameter_and_stage3_records_how_far_the_actor_moved():
    config = RaCTConfig(**TINY["ract"])
    _, split = experiment.load_split("synthetic", TINY, seed=0)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    trainer = experiment.make_trainer(split, config, valid, 0, metric="Recall@20")
    results = trainer.run()
    for stage in (1, 3):
        values = [row["valid Recall@20"] for row in results[stage].history]
        assert results[stage].best_value == max(values)
        assert not any("valid NDCG@100" in row for row in results[stage].history)
    changes = [row["actor change"] for row in results[3].history]
    assert changes[0] == 0 and all(c > 0 for c in changes[1:])  # stage 3 moved the actor
    with pytest.raises(ValueError, match="selection metric"):
        experiment.RaCTTrainer(trainer.actor, trainer.critic, config, trainer.train_rows, valid,
                               trainer.critic_valid, metric="NDCG@7")


def test_stage3_records_the_critic_against_the_true_ndcg_and_can_keep_its_last_epoch():
    """Every stage-3 epoch records the critic's predicted NDCG and the true NDCG of the actor's
    ranking (validation users and training batches); with ``finetune_keep="last"`` the kept actor
    is the last epoch's, so it differs from the pre-trained one even when no epoch beats it."""
    config = RaCTConfig(**{**TINY["ract"], "finetune_keep": "last"})
    _, split = experiment.load_split("synthetic", TINY, seed=0)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    trainer = experiment.make_trainer(split, config, valid, 0)
    trainer.run(until=2)
    pretrained = copy.deepcopy(trainer.actor)
    stage3 = trainer.run_stage(3)
    curves = experiment.stage3_curves(stage3)
    assert curves["epoch"] == list(range(config.finetune_epochs + 1))
    assert stage3.best_epoch == config.finetune_epochs and curves["actor change"][-1] > 0
    after = trainer.critic_valid.measure(trainer.actor, trainer.critic)
    assert curves["valid true NDCG@100"][-1] == pytest.approx(
        float(after.per_user["NDCG@100"].mean()))
    assert curves["valid predicted NDCG@100"][-1] == pytest.approx(
        float(after.per_user["predicted NDCG"].mean()))
    assert curves["valid critic R2"][-1] == pytest.approx(after.metrics["critic R2"])
    before = trainer.critic_valid.measure(pretrained, trainer.critic)  # the true NDCG at epoch 0
    assert curves["valid true NDCG@100"][0] == pytest.approx(
        float(before.per_user["NDCG@100"].mean()))
    assert math.isnan(curves["train true NDCG@100"][0])  # no training batch before epoch 1
    assert all(0 < v < 1 for v in curves["train predicted NDCG@100"][1:])
    assert valid.evaluate(trainer.actor).metrics["NDCG@100"] == pytest.approx(
        stage3.history[-1]["valid NDCG@100"])
    with pytest.raises(ValueError, match="finetune_keep"):
        RaCTConfig(finetune_keep="first")
