"""GPT-2 next-item model, generation strategies, horizon metrics."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded from a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch

from coldrec_lib.data import filter_min_counts, last_n_horizon
from coldrec_lib.data.splits import EvalBatch
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.experiments import generation as experiment, sequential
from coldrec_lib.generation import (BeamSearch, Greedy, RankedLists, Sampling, TopK,
                                    generate_lists, hf_generate, seen_items)
from coldrec_lib.metrics import horizon_curves, ranking_metrics
from coldrec_lib.models.gpt2rec import GPT2Rec, GPT2RecConfig

N_ITEMS = 60
ALL = [TopK(), Greedy(), BeamSearch(3), Sampling(0.7, 10), Sampling(0.7, 10, 8, "rra"),
       Sampling(0.7, None, 8, "ra")]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2Rec(N_ITEMS, GPT2RecConfig(context=24, dim=16, n_heads=2)).eval()


def make_batch(lengths, seed=0, n_items=N_ITEMS):
    """Left-padded histories of distinct items, one row per length."""
    generator = torch.Generator().manual_seed(seed)
    history = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        items = torch.randperm(n_items, generator=generator)[:length] + 1
        history[row, history.shape[1] - length:] = items
    return EvalBatch(torch.arange(len(lengths)), history, torch.ones(len(lengths), 1,
                                                                     dtype=torch.long))


def test_special_tokens_are_not_items(model):
    config = model.gpt.config
    assert config.vocab_size == N_ITEMS + 2
    assert config.pad_token_id == 0
    assert config.bos_token_id == config.eos_token_id == N_ITEMS + 1
    assert model.score(make_batch([5, 3])).shape == (2, N_ITEMS + 1)


def test_left_padding_does_not_change_scores(model):
    batch = make_batch([7])
    padded = EvalBatch(batch.users, torch.cat([torch.zeros(1, 5, dtype=torch.long),
                                               batch.history], 1), batch.targets)
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), model.score(padded))


def test_cache_step_matches_a_full_forward_pass(model):
    batch = make_batch([9, 4, 12])
    with torch.no_grad():
        _, cache = model.prompt(batch.history)
        nxt = torch.tensor([50, 51, 52])
        logits = model.step(nxt, cache)
        full = model.score(EvalBatch(batch.users, torch.cat([batch.history, nxt[:, None]], 1),
                                     batch.targets))
    finite = torch.isfinite(full)
    torch.testing.assert_close(logits[finite], full[finite], atol=1e-4, rtol=1e-4)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    model = GPT2Rec(N_ITEMS, GPT2RecConfig(context=16, dim=16, dropout=0.0))
    sequences = make_batch([16] * 32).history
    sequences = torch.cat([sequences, sequences[:, :1]], 1)  # 17 items: 16 inputs, 16 targets
    batch = (sequences[:, :-1], sequences[:, 1:])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.loss(batch).detach())
    for _ in range(80):  # at 40 steps the loss sat at 0.43-0.48 of the first: near the bar
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first


@pytest.mark.parametrize("strategy", ALL, ids=lambda s: s.name)
def test_lists_are_distinct_unseen_items_even_beyond_the_context(model, strategy):
    # histories longer than the context (24): the prompt is truncated, the mask is not
    batch = make_batch([40, 30, 3, 10])
    with torch.no_grad():
        lists = strategy.rank(model, batch, 10, torch.Generator().manual_seed(0))
    assert lists.shape == (4, 10)
    assert ((lists >= 1) & (lists <= N_ITEMS)).all()
    for row, items in zip(batch.history, lists):
        assert len(set(items.tolist())) == 10
        assert not set(items.tolist()) & set(row[row > 0].tolist())


def test_greedy_matches_hugging_face_generate(model):
    batch = make_batch([40, 30, 3, 10, 22], seed=1)
    with torch.no_grad():
        ours = Greedy().rank(model, batch, 10)
    for row in range(len(batch.users)):
        one = EvalBatch(batch.users[row:row + 1], batch.history[row:row + 1],
                        batch.targets[row:row + 1])
        assert hf_generate(model, one, Greedy(), 10)[0].tolist() == ours[row].tolist()


def test_one_beam_is_greedy_and_cold_sampling_is_greedy(model):
    batch = make_batch([12, 5, 30], seed=2)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        greedy = Greedy().rank(model, batch, 8)
        assert torch.equal(BeamSearch(1).rank(model, batch, 8), greedy)
        assert torch.equal(Sampling(1.0, 1, 5, "rra").rank(model, batch, 8, generator), greedy)
        relevance = Sampling(1.0, 1, 5, "ra").rank(model, batch, 8, generator)
    assert torch.equal(relevance.sort(1).values, greedy.sort(1).values)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(model):
    batch = make_batch([12, 5, 30, 8], seed=3)

    def log_likelihood(items):
        banned, total = seen_items(batch.history, N_ITEMS), 0.0
        logits, cache = model.prompt(batch.history[:, -(24 - 5):])
        for step in range(items.shape[1]):
            log_p = torch.log_softmax(logits.masked_fill(banned, float("-inf")), 1)
            total = total + log_p.gather(1, items[:, step:step + 1]).squeeze(1)
            banned[torch.arange(len(items)), items[:, step]] = True
            if step < items.shape[1] - 1:
                logits = model.step(items[:, step], cache)
        return total

    with torch.no_grad():
        greedy = log_likelihood(Greedy().rank(model, batch, 6))
        beam = log_likelihood(BeamSearch(4).rank(model, batch, 6))
    assert (beam >= greedy - 1e-4).all()


def test_sampling_is_seeded(model):
    batch = make_batch([12, 5, 30], seed=4)
    strategy = Sampling(1.0, None, 4, "rra")
    with torch.no_grad():
        a = strategy.rank(model, batch, 10, torch.Generator().manual_seed(7))
        b = strategy.rank(model, batch, 10, torch.Generator().manual_seed(7))
        c = strategy.rank(model, batch, 10, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="temperature"):
        Sampling(0.0)
    with pytest.raises(ValueError, match="num_beams"):
        BeamSearch(0)
    with pytest.raises(ValueError, match="aggregation"):
        Sampling(1.0, aggregation="mean")
    nearly_all = make_batch([N_ITEMS - 4])
    with pytest.raises(ValueError, match="4 catalogue items left.*needs 6"):
        BeamSearch(6).rank(model, nearly_all, 3)
    with pytest.raises(ValueError, match="needs 10"):
        Greedy().rank(model, nearly_all, 10)
    with pytest.raises(ValueError, match="does not fit the model's context"):
        Greedy().rank(model, make_batch([5]), 30)


def test_horizon_longer_than_the_held_out_items_is_an_error(synthetic):
    split = last_n_horizon(filter_min_counts(synthetic, min_user=12), n=5)
    assert len(experiment.first_targets(split.test, 5).targets.items) == 5 * len(split.test)
    with pytest.raises(ValueError, match="a horizon of 6 items, but user"):
        experiment.first_targets(split.test, 6)


def test_horizon_curves_by_hand():
    top = torch.tensor([[5, 1, 9]])
    targets = torch.tensor([[9, 2, 5]])
    curves = horizon_curves(top, targets)
    assert curves["hit"].tolist() == [[1.0, 0.0, 1.0]]
    # positions <= 1: {9} found at place 3 -> (1/log2 4) / 1
    assert curves["NDCG"][0, 0] == pytest.approx(0.5)
    # positions <= 3: {9, 2, 5} found at places 1 and 3
    relevant = torch.zeros(1, 10, dtype=torch.bool)
    relevant[0, [9, 2, 5]] = True
    scores = torch.zeros(1, 10)
    scores[0, [5, 1, 9]] = torch.tensor([3.0, 2.0, 1.0])
    expected = ranking_metrics(scores, relevant, (3,))[0]["NDCG@3"]
    assert curves["NDCG"][0, 2] == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="held-out items"):
        horizon_curves(top, torch.tensor([[9, 0, 0]]))


def test_ranked_lists_are_scored_by_the_evaluator(synthetic, model):
    split = last_n_horizon(filter_min_counts(synthetic, min_user=12), n=5)
    test = experiment.first_targets(split.test, 5)
    lists = torch.stack([test.targets.first(torch.tensor([r]), 5)[0] for r in range(len(test))])
    evaluator = Evaluator(test, FullRanking(ks=(5,)), split.n_items)
    metrics = evaluator.evaluate(RankedLists(test.users, lists, split.n_items)).metrics
    assert metrics["NDCG@5"] == pytest.approx(1.0) and metrics["Recall@5"] == pytest.approx(1.0)
    shifted = evaluator.evaluate(RankedLists(test.users, lists.roll(1, 0), split.n_items))
    assert shifted.metrics["NDCG@5"] < 0.5


def test_generate_lists_over_an_eval_set_is_batch_size_independent(synthetic):
    split = last_n_horizon(filter_min_counts(synthetic, min_user=12), n=5)
    torch.manual_seed(0)
    small = GPT2Rec(split.n_items, GPT2RecConfig(context=16, dim=16))
    a = generate_lists(small, Greedy(), split.test, k=5, batch_size=7)
    b = generate_lists(small, Greedy(), split.test, k=5, batch_size=64)
    assert a.shape == (len(split.test), 5) and torch.equal(a, b)


def test_smoke_experiment():
    table = experiment.run("synthetic", "smoke", seed=0)
    rows = {(r["model"], r["strategy"]): r for r in table.rows}
    assert all(r["seen@10"] == 0 for r in table.rows)
    gpt2 = rows["GPT-2", "top-K"]
    assert gpt2["NDCG@10"] > rows["Popularity", "top-K"]["NDCG@10"]
    assert gpt2["NDCG p<=10"] == pytest.approx(gpt2["NDCG@10"], abs=1e-6)
    assert {r["sweep"] for r in table.rows} == {"main", "temperature", "sequences"}
    assert ("Successor", "top-K") in rows
    max_epochs = experiment.settings_for("synthetic", "smoke")["max_epochs"]
    for name in experiment.MODELS:
        row = rows[name, "top-K" if name != "GPT-2" else "greedy"]
        assert 1 <= row["best epoch"] <= row["epochs"] <= row["max epochs"] == max_epochs


def test_full_preset_trains_with_the_sequential_experiments_converged_recipe():
    recipe = sequential.settings_for("ml-100k", "full")
    for dataset in ("ml-100k", "ml-1m"):
        settings = experiment.settings_for(dataset, "full")
        assert settings["patience"] == recipe["patience"]
        assert settings["max_epochs"] == recipe["max_epochs"]
        for model in ("gpt2", "bert4rec"):
            assert settings[model]["lr"] == recipe["backbone"]["lr"]
            assert settings[model]["batch_size"] == recipe["backbone"]["batch_size"]
        assert settings["sasrec"]["batch_size"] == recipe["models"]["SASRec"]["batch_size"]
