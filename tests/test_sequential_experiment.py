"""The `sequential` experiment end to end (smoke preset): every model under both protocols."""
from coldrec_lib.evaluation import ResultsTable
from coldrec_lib.experiments import get_experiment, sequential


def test_smoke_run_has_every_model_under_both_protocols():
    experiment = get_experiment("sequential")
    table = experiment.run("synthetic", "smoke", seed=0)
    frame = table.to_frame()
    models = ["Popularity", "BPR-MF", *experiment.BACKBONES]
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
