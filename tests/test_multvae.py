import pandas as pd
import pytest
import torch

from coldrec_lib.data import filter_min_counts, heldout_users
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.models.multvae import MultVAE, MultVAEConfig, UserRows, binary_rows, user_batches
from coldrec_lib.models.popularity import Popularity
from coldrec_lib.training import fit, seed_everything

PROTOCOL = FullRanking(ks=(20, 100), recall_denominator="min(k,R)")


def test_kl_weight_rises_linearly_to_its_cap():
    vae = MultVAE(10, MultVAEConfig(beta_cap=0.2, anneal_steps=100))
    assert [vae.kl_weight(s) for s in (0, 10, 20, 50)] == pytest.approx([0.0, 0.1, 0.2, 0.2])
    dae = MultVAE(10, MultVAEConfig.dae())
    assert dae.kl_weight(10_000) == 0.0


def test_training_steps_advance_the_annealing_but_evaluation_does_not():
    vae = MultVAE(10, MultVAEConfig(hidden_dims=(8,), latent_dim=4, anneal_steps=10))
    x = (torch.rand(6, 10) < 0.5).float()
    x[:, 0] = 1
    vae.train()
    vae.loss(x).backward()
    vae.loss(x).backward()
    assert int(vae.anneal_step) == 2 and vae.kl_weight() == pytest.approx(0.2)
    vae.eval()
    vae.loss(x)
    assert int(vae.anneal_step) == 2


def test_input_is_l2_normalised_then_dropped_out_with_rescaling():
    vae = MultVAE(4, MultVAEConfig(input_dropout=0.5))
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    assert torch.allclose(vae.normalised_input(x), torch.tensor([[0.5] * 4, [0, 1.0, 0, 0]]))
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # kept entries are rescaled by 1 / keep_prob; dropped ones are zero
    assert torch.allclose(vae.normalised_input(x, mask),
                          torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 0.0]]))
    seed_everything(0)
    kept = vae.draw_keep_mask(torch.ones(200, 50)).mean()
    assert abs(float(kept) - 0.5) < 0.02


def test_eval_mode_is_deterministic_and_training_mode_samples():
    seed_everything(0)
    vae = MultVAE(12, MultVAEConfig(hidden_dims=(8,), latent_dim=4))
    x = (torch.rand(3, 12) < 0.5).float()
    vae.eval()
    assert torch.equal(vae(x)[0], vae(x)[0])
    vae.train()
    assert not torch.equal(vae(x)[0], vae(x)[0])  # eps ~ N(0, 1) makes the logits differ


def test_score_has_a_padding_column_and_reads_the_history():
    vae = MultVAE(5, MultVAEConfig(hidden_dims=(8,), latent_dim=4)).eval()
    history = torch.tensor([[0, 2, 3], [1, 4, 5]])
    batch = type("B", (), {"history": history, "users": torch.arange(2)})()
    scores = vae.score(batch)
    assert scores.shape == (2, 6) and torch.isinf(scores[:, 0]).all()
    rows = binary_rows(history, 5)
    assert rows.tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 1, 1]]


def test_user_rows_give_each_users_items():
    frame = pd.DataFrame({"user": [7, 3, 3, 7, 9], "item": [1, 2, 4, 5, 3]})
    rows = UserRows(frame, n_items=5)
    assert len(rows) == 3
    dense = rows.dense(torch.tensor([2, 0, 1]))  # users sorted: 3, 7, 9
    assert dense.tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1]]
    batches = list(user_batches(rows, 2, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [2, 1] and sum(b.sum() for b in batches) == 5


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="input_dropout"):
        MultVAEConfig(input_dropout=1.0)
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        MultVAE(6).loss(torch.ones(2, 5))
    with pytest.raises(ValueError, match="item ids must lie in 1..3"):
        UserRows(pd.DataFrame({"user": [0], "item": [4]}), n_items=3)
    with pytest.raises(ValueError, match="batch_size"):
        next(user_batches(UserRows(pd.DataFrame({"user": [0], "item": [1]}), 3), 0,
                          torch.Generator()))


@pytest.mark.parametrize("variational", [True, False])
def test_multvae_beats_popularity_on_heldout_users(synthetic, variational):
    """Fails for a model that ignores the user's input (it cannot beat popularity then)."""
    data = filter_min_counts(synthetic, min_user=5)
    split = heldout_users(data, 50, 50, seed=0)
    generator = seed_everything(0)
    config = MultVAEConfig(hidden_dims=(100,), latent_dim=32, batch_size=50, anneal_steps=200)
    if not variational:
        config = MultVAEConfig.dae(hidden_dims=(100,), latent_dim=32, batch_size=50)
    model = MultVAE(split.n_items, config)
    rows = UserRows(split.train, split.n_items)
    valid = Evaluator(split.valid, PROTOCOL, split.n_items)
    result = fit(model, torch.optim.Adam(model.parameters(), lr=config.lr),
                 lambda epoch: user_batches(rows, config.batch_size, generator), valid,
                 "NDCG@100", max_epochs=30, patience=30, progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    test = Evaluator(split.test, PROTOCOL, split.n_items)
    ours = test.evaluate(model).metrics["NDCG@100"]
    popular = test.evaluate(Popularity(split.train, split.n_items)).metrics["NDCG@100"]
    print(f"NDCG@100: model {ours:.4f}, popularity {popular:.4f}")
    assert ours > popular + 0.03, (ours, popular)
