"""CMML, s2Meta, first-order MAML: batching over scenarios is exact (padding never leaks), the
pieces train, the stop controller masks scenarios, the evaluator ranks what it should."""
from dataclasses import replace

import pytest
import torch

from coldrec_lib.data.scenarios import (PretrainedEmbeddings, defined_scenarios,
                                        split_scenarios)
from coldrec_lib.data.synthetic import make_scenario_synthetic
from coldrec_lib.evaluation import ScenarioEvaluator, ScenarioRanking
from coldrec_lib.experiments import cmml as experiment
from coldrec_lib.models.cmml import CMML, MODULATIONS, CMMLConfig
from coldrec_lib.models.s2meta import S2Meta, S2MetaConfig, preprocess
from coldrec_lib.models.scenario import FirstOrderMAML, MAMLConfig, SupportPopularity

HIDDEN = (16, 16)


@pytest.fixture(scope="module")
def split():
    data = make_scenario_synthetic(n_users=300, n_items=200, n_topics=8, n_scenarios=80,
                                   users_per_scenario=16, seed=0)
    return split_scenarios(defined_scenarios(*data), seed=0)


@pytest.fixture(scope="module")
def embeddings(split):
    g = torch.Generator().manual_seed(0)
    return PretrainedEmbeddings(torch.randn(split.train.n_users, 8, generator=g),
                                torch.randn(split.train.n_items + 1, 8, generator=g))


def all_models(embeddings):
    torch.manual_seed(0)
    models = {f"cmml-{m}": CMML(embeddings, CMMLConfig(hidden=HIDDEN, modulation=m))
              for m in MODULATIONS}
    models["cmml-gru"] = CMML(embeddings, CMMLConfig(hidden=HIDDEN, encoder="gru"))
    models["cmml-concat"] = CMML(embeddings, CMMLConfig(hidden=HIDDEN, generator="concat"))
    models["cmml-context"] = CMML(embeddings, CMMLConfig(hidden=HIDDEN, generator="context"))
    models["maml"] = FirstOrderMAML(embeddings, MAMLConfig(hidden=HIDDEN, inner_steps=3))
    models["s2meta"] = S2Meta(embeddings, S2MetaConfig(hidden=HIDDEN, min_steps=2, max_steps=5))
    return models


@pytest.mark.parametrize("name", ["cmml-film", "cmml-film1", "cmml-gating", "cmml-final",
                                  "cmml-softm", "cmml-gru", "cmml-concat", "cmml-context",
                                  "maml", "s2meta"])
def test_batched_scenarios_equal_one_at_a_time(split, embeddings, name):
    """Scores of 6 scenarios adapted together (padded to the largest) equal each adapted alone,
    with support sizes that differ (support_limit cuts some)."""
    model = all_models(embeddings)[name].eval()
    eval_set = split.test.eval_set(max_support=40, n_negatives=2, seed=0)
    scenarios = torch.arange(6)
    with torch.no_grad():
        batch = eval_set.batch(scenarios)
        together = model.pair_scores(model.adapt(batch), batch.users, batch.candidates, grid=True)
        for n in range(6):
            alone_batch = eval_set.batch(scenarios[n:n + 1])
            alone = model.pair_scores(model.adapt(alone_batch), alone_batch.users,
                                      alone_batch.candidates, grid=True)[0]
            users, items = alone.shape
            assert torch.allclose(together[n, :users, :items], alone, atol=1e-5), n


@pytest.mark.parametrize("name", ["cmml-film", "cmml-final", "cmml-softm", "cmml-concat",
                                  "cmml-context", "maml"])
def test_grid_scores_equal_pair_scores(split, embeddings, name):
    """Scoring every user against every candidate (the split first layer, the decomposed
    hypernetwork) gives the scores of the same pairs scored one by one."""
    model = all_models(embeddings)[name].eval()
    batch = split.test.eval_set(max_support=40, n_negatives=2, seed=0).batch(torch.arange(3))
    with torch.no_grad():
        state = model.adapt(batch)
        grid = model.pair_scores(state, batch.users, batch.candidates, grid=True)
        n, u, c = grid.shape
        pairs = model.pair_scores(state, batch.users.unsqueeze(2).expand(n, u, c).reshape(n, -1),
                                  batch.candidates.unsqueeze(1).expand(n, u, c).reshape(n, -1))
    assert torch.allclose(grid, pairs.view(n, u, c), atol=1e-5)


def test_maml_meta_gradient_is_the_mean_of_per_scenario_gradients(split, embeddings):
    model = FirstOrderMAML(embeddings, MAMLConfig(hidden=HIDDEN, inner_steps=2))
    batch = split.train.sample(5, 12, 20, 2, torch.Generator().manual_seed(1))
    batched = torch.autograd.grad(model.loss(batch), list(model.parameters()))
    singles = [torch.autograd.grad(model.loss(_slice(batch, n)), list(model.parameters()))
               for n in range(5)]
    for g, *per in zip(batched, *singles):
        assert torch.allclose(g, torch.stack(per).mean(0), atol=1e-6)


def _slice(batch, n):
    return type(batch)(**{k: v[n:n + 1] for k, v in vars(batch).items()})


def test_maml_inner_loop_changes_the_weights_and_global_does_not(split, embeddings):
    batch = split.train.sample(4, 12, 20, 2, torch.Generator().manual_seed(1))
    maml = FirstOrderMAML(embeddings, MAMLConfig(hidden=HIDDEN, inner_steps=2))
    glob = FirstOrderMAML(embeddings, MAMLConfig(hidden=HIDDEN, inner_steps=0))
    initial = maml.initial_params(4)
    assert any(not torch.equal(a, b) for a, b in zip(maml.adapt(batch), initial))
    assert all(torch.equal(a, b) for a, b in zip(glob.adapt(batch), glob.initial_params(4)))
    assert (maml.support_loss(maml.adapt(batch), batch) < maml.support_loss(initial, batch)).all()


@pytest.mark.parametrize("name", ["cmml-film", "cmml-film1", "cmml-gating", "cmml-final",
                                  "cmml-softm", "cmml-gru"])
def test_the_context_reaches_the_scores(split, embeddings, name):
    """The loss has a gradient in the context encoder: modulation uses the context."""
    model = all_models(embeddings)[name]
    batch = split.train.sample(4, 12, 20, 2, torch.Generator().manual_seed(1))
    model.loss(batch).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_film_one_plus_gamma_starts_close_to_the_plain_backbone(split, embeddings):
    model = CMML(embeddings, CMMLConfig(hidden=HIDDEN, modulation="film1"))
    torch.nn.init.zeros_(model.scorer.hyper.weight)
    batch = split.train.sample(3, 12, 20, 2, torch.Generator().manual_seed(1))
    state = model.adapt(batch)
    u, i = model.embed(batch.query_users, batch.query_items)
    plain = model.scorer.backbone(model.scorer.backbone.parameters_list(), u, i)
    assert torch.allclose(model.pair_scores(state, batch.query_users, batch.query_items), plain)


def test_s2meta_stop_masks_and_reinforce(split, embeddings):
    torch.manual_seed(0)
    model = S2Meta(embeddings, S2MetaConfig(hidden=HIDDEN, min_steps=2, max_steps=6))
    batch = split.train.sample(8, 12, 20, 2, torch.Generator().manual_seed(1))
    adaptation = model.adapt_with_stops(batch)
    assert ((adaptation.steps >= 2) & (adaptation.steps <= 6)).all()
    assert adaptation.stop_loss is not None
    adaptation.stop_loss.backward()
    assert model.stop_out.weight.grad.abs().sum() > 0
    # a scenario that stopped keeps its weights: re-running with the same stops is consistent
    model.eval()
    with torch.no_grad():
        evaluated = model.adapt_with_stops(batch)
    assert evaluated.stop_loss is None
    assert ((evaluated.steps >= 2) & (evaluated.steps <= 6)).all()


def test_s2meta_stopped_scenarios_are_frozen(split, embeddings):
    """With a stop controller that always stops, every scenario takes exactly min_steps."""
    model = S2Meta(embeddings, S2MetaConfig(hidden=HIDDEN, min_steps=2, max_steps=6)).eval()
    torch.nn.init.zeros_(model.stop_out.weight)
    torch.nn.init.constant_(model.stop_out.bias, 10.0)
    batch = split.train.sample(4, 12, 20, 2, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model.adapt_with_stops(batch).steps == 2).all()
        torch.nn.init.constant_(model.stop_out.bias, -10.0)
        assert (model.adapt_with_stops(batch).steps == 6).all()


def test_preprocess():
    x = torch.tensor([1e-6, -2.0, 0.0, 1e-5])
    out = preprocess(x)
    assert out.shape == (4, 2)
    assert torch.allclose(out[1], torch.tensor([torch.log(torch.tensor(2.0)) / 10, -1.0]))
    assert out[2, 0] == -1 and out[2, 1] == 0


class Oracle(torch.nn.Module):
    """Scores a candidate 1 if it is one of the user's targets in the scenario (it reads the
    evaluation batch; the evaluator must score all users in one chunk)."""

    def adapt(self, batch):
        return batch.relevant.float()

    def pair_scores(self, relevant, users, items, grid=True):
        assert relevant.shape[1] == users.shape[1]
        return relevant


def test_evaluator_oracle_and_ties(split, embeddings):
    eval_set = split.test.eval_set(max_support=40, n_negatives=2, seed=0)
    evaluator = ScenarioEvaluator(eval_set, ScenarioRanking(ks=(1, 5, 100)),
                                  scenarios_per_batch=4, max_pairs=1 << 30)
    oracle = evaluator.evaluate(Oracle())
    assert oracle.metrics["NDCG@5"] == pytest.approx(1.0)
    assert oracle.metrics["Recall@100"] == pytest.approx(1.0)
    assert oracle.n_users == eval_set.n_users
    constant = SupportPopularity(embeddings, torch.zeros(0, dtype=torch.long))
    constant.tie_break.zero_()
    empty = evaluator.evaluate(constant, name="c")  # support counts only: ties are pessimistic
    assert empty.metrics["Recall@1"] < oracle.metrics["Recall@1"]


def test_cmml_learns_and_beats_support_popularity():
    """A short training on the smoke preset's synthetic scenarios: the query loss falls and CMML
    ranks test users' items better than support popularity."""
    config = experiment.settings_for("synthetic", "smoke")
    split = experiment.make_split("synthetic", config, seed=0)
    config.update(max_epochs=4)
    generator = torch.Generator().manual_seed(0)
    embeddings = experiment.pretrain_embeddings(split.train, config["dim"], config["mf_epochs"],
                                                generator)
    valid = experiment.make_evaluator(split.valid, config, 0)
    test = experiment.make_evaluator(split.test, config, 1)
    torch.manual_seed(0)
    model = CMML(embeddings, CMMLConfig(hidden=config["hidden"], lr=config["lr"]))
    history = experiment.train_scenario_model(model, split, config, generator, valid)
    assert history.history[-1]["loss"] < history.history[0]["loss"]
    popularity = SupportPopularity(embeddings, split.train.pair_items)
    assert (test.evaluate(model).metrics["Recall@20"]
            > test.evaluate(popularity).metrics["Recall@20"])


def test_unknown_variant_is_an_error(embeddings):
    with pytest.raises(ValueError, match="modulation must be one of"):
        CMML(embeddings, CMMLConfig(modulation="film2"))
    with pytest.raises(ValueError, match="encoder must be"):
        CMML(embeddings, replace(CMMLConfig(), encoder="lstm"))


@pytest.mark.parametrize("experiment_name, setting", [
    ("cmml", "max_epochs=0"), ("cmml", "eval_every=0"), ("cmml", "batches_per_epoch=0"),
    ("sequential", "max_epochs=0"), ("sequential", "backbone.batch_size=0")])
def test_a_setting_below_one_is_one_error_line(experiment_name, setting, capsys, tmp_path):
    from coldrec_lib.cli import main
    out = tmp_path / "r.json"
    assert main(["run", experiment_name, "--set", setting, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: setting {setting}: expected a whole number >= 1\n"
    assert not out.exists()
