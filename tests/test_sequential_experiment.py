"""The `sequential` experiment end to end (smoke preset): every model under both protocols."""
from coldrec_lib.evaluation import ResultsTable
from coldrec_lib.experiments import get_experiment, sequential


def test_smoke_run_has_every_model_under_both_protocols():
    experiment = get_experiment("sequential")
    table = experiment.run("synthetic", "smoke", seed=0)
    frame = table.to_frame()
    models = ["Popularity", "Successor", "BPR-MF", *experiment.BACKBONES]
    assert sorted(map(tuple, frame[["model", "protocol"]].to_numpy())) == sorted(
        (m, p) for m in models for p in experiment.PROTOCOLS)
    assert set(table.protocols) == set(experiment.PROTOCOLS)
    masked = frame[frame["protocol"] == "full, seen masked"].set_index("model")
    for name in ["BPR-MF", *experiment.BACKBONES]:  # every stage trained and was selected
        assert 1 <= masked.loc[name, "best epoch"] <= masked.loc[name, "epochs"]
    # the best model beats popularity clearly: the pipeline learns something
    assert masked["NDCG@10"].drop("Popularity").max() > 1.5 * masked.loc["Popularity", "NDCG@10"]
    assert "nothing masked" in table.protocols["full, unmasked"]


def test_a_diverged_backbone_is_named_and_the_other_models_results_are_written(tmp_path, capsys):
    from coldrec_lib.cli import main
    from coldrec_lib.training import DIVERGED_COLUMN
    out = tmp_path / "r.json"
    small = ["synthetic.n_users=150", "synthetic.n_items=60", "max_epochs=2", "bpr_epochs=2",
             "backbone.lr=1e30"]
    assert main(["run", "sequential", "--out", str(out)]
                + [arg for pair in small for arg in ("--set", pair)]) == 1
    captured = capsys.readouterr()
    assert "SASRec diverged in epoch 1: its training loss" in captured.out
    assert "error: training diverged (" in captured.err and "SASRec in epoch 1" in captured.err
    rows = ResultsTable.load_json(out).to_frame().set_index("model")
    diverged = rows[rows[DIVERGED_COLUMN] >= 1]
    assert "SASRec" in diverged.index and set(diverged.index) <= set(sequential.BACKBONES)
    assert diverged["NDCG@10"].isna().all()
    kept = rows.drop(diverged.index)
    assert {"Popularity", "BPR-MF"} <= set(kept.index) and (kept["NDCG@10"] > 0).all()


def test_the_evaluation_batch_size_is_a_setting_that_changes_no_number():
    small = {"synthetic.n_users": "150", "synthetic.n_items": "60", "max_epochs": "2",
             "bpr_epochs": "2", "backbone.max_len": "10", "backbone.dim": "16"}
    default = sequential.run("synthetic", "smoke", overrides=small)
    batches_of_7 = sequential.run("synthetic", "smoke", overrides={**small,
                                                                   "eval_batch_size": "7"})
    assert len(default.rows) == 14 and batches_of_7.rows == default.rows  # 7 models x 2 protocols


def test_the_default_evaluation_batch_bounds_the_memory_of_a_large_catalogue():
    from coldrec_lib.evaluation import MAX_SCORES_PER_BATCH, Evaluator
    split = sequential.leave_one_out(sequential.get_data("synthetic", n_users=50, n_items=30))
    protocol = sequential.PROTOCOLS["full, seen masked"]
    assert Evaluator(split.test, protocol, 1_682).batch_size == 1024
    for n_items in (200_000, 1_000_000, 50_000_000):
        batch_size = Evaluator(split.test, protocol, n_items).batch_size
        assert batch_size >= 1 and batch_size * (n_items + 1) <= max(MAX_SCORES_PER_BATCH,
                                                                     n_items + 1)
    assert Evaluator(split.test, protocol, 200_000, batch_size=3).batch_size == 3
