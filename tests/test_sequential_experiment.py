"""The `sequential` experiment end to end (smoke preset): every model under both protocols."""
from coldrec_lib.experiments import get_experiment


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
