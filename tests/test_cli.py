import json

from coldrec_lib.cli import main
from coldrec_lib.experiments import EXPERIMENTS, get_experiment


def test_every_registered_experiment_has_presets_and_run():
    for name in EXPERIMENTS:
        module = get_experiment(name)
        assert set(module.PRESETS) == {"smoke", "full"} and callable(module.run)


def test_run_foundations_prints_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["run", "foundations", "--preset", "smoke", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "BPR-MF" in printed and "sampled negatives" in printed and "full ranking" in printed
    rows = {(r["model"], r["protocol"]): r for r in json.loads(out.read_text())["rows"]}
    # the collaborative model beats popularity on the synthetic data under both protocols
    for protocol in ("full", "sampled-100"):
        assert rows[("BPR-MF", protocol)]["NDCG@10"] > rows[("Popularity", protocol)]["NDCG@10"]
