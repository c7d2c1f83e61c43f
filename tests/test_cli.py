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


# ---------------------------------------------------------------------- the CLI
import inspect  # noqa: E402

import pytest  # noqa: E402

from coldrec_lib.data.errors import DataError  # noqa: E402
from coldrec_lib.experiments import foundations  # noqa: E402

FAST = ["--set", "max_epochs=3", "--set", "synthetic.n_users=200", "--set", "synthetic.n_items=150"]


def test_every_experiment_takes_the_same_run_arguments():
    for name in EXPERIMENTS:
        parameters = inspect.signature(get_experiment(name).run).parameters
        assert {"progress", "overrides", "checkpoint_dir"} <= set(parameters), name


def test_run_shows_progress_counts_users_fits_a_terminal_and_names_results_by_seed(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "foundations", "--seed", "3", *FAST]) == 0
    captured = capsys.readouterr()
    # a progress bar for the data, the model's training (with its metric) and the evaluation
    for phase in ("data: synthetic", "BPR-MF", "valid NDCG@10", "evaluation"):
        assert phase in captured.err, phase
    table = captured.out.split("results written to")[0]  # then the file name, however long
    assert max(len(line) for line in table.splitlines()) <= 100
    out = tmp_path / "results" / ("foundations-synthetic-smoke-seed3-max_epochs=3-"
                                  "synthetic.n_users=200-synthetic.n_items=150.json")
    saved = json.loads(out.read_text())
    assert saved["seed"] == 3 and saved["overrides"]["max_epochs"] == "3"
    assert all(row["users"] == 200 for row in saved["rows"])
    assert "users" in captured.out


def test_bad_arguments_and_data_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    for flag in ("--seed", "--threads"):
        with pytest.raises(SystemExit) as exit_:
            main(["run", "foundations", flag, "-1"])
        assert exit_.value.code == 2
        assert f"argument {flag}: expected a whole number >= 0; got -1" in capsys.readouterr().err
    assert main(["run", "foundations", "--set", "epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'epochs'" in err and "max_epochs" in err and "Traceback" not in err

    def broken(*args, **kwargs):
        raise DataError("u.data", "timestamp", "an integer")
    monkeypatch.setattr(foundations, "run", broken)
    assert main(["run", "foundations", "--out", str(tmp_path / "r.json")]) == 2
    message = capsys.readouterr().err.strip()
    assert message == "error: u.data, field 'timestamp': expected an integer"


def test_an_unwritable_out_is_found_before_the_run(tmp_path, monkeypatch, capsys):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the experiment ran although its results could not be written")
    monkeypatch.setattr(foundations, "run", must_not_run)
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert main(["run", "foundations", "--out", str(blocked / "r.json")]) == 2
    assert main(["run", "foundations", "--out", str(tmp_path)]) == 2
    assert "cannot write the results" in capsys.readouterr().err


def test_an_interrupted_run_resumes_from_its_checkpoints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = ["run", "foundations", *FAST, "--checkpoint-dir", "ck", "--out", "a.json"]
    assert main(first) == 0
    assert "loaded the finished model" not in capsys.readouterr().out
    assert main(first[:-1] + ["b.json"]) == 0
    assert "BPR-MF: loaded the finished model from ck/BPR-MF.pt" in capsys.readouterr().out
    rows = [json.loads((tmp_path / f).read_text())["rows"] for f in ("a.json", "b.json")]
    assert rows[0] == rows[1]
    # other data or split in the same folder: a clear error, not a silent load
    other = ["run", "foundations", *FAST[:-2], "--set", "synthetic.n_items=160",
             "--checkpoint-dir", "ck", "--out", "c.json"]
    assert main(other) == 2
    assert "ck/BPR-MF.pt was made on other data, split, settings or seed" in capsys.readouterr().err
    # --resume: a checkpoint folder named after the run
    assert main(["run", "foundations", *FAST, "--resume", "--out", "d.json"]) == 0
    assert (tmp_path / "checkpoints" / "foundations-synthetic-smoke-seed0-max_epochs=3-"
            "synthetic.n_users=200-synthetic.n_items=150" / "BPR-MF.pt").exists()


def write_u_data(folder, seed):
    """A small data set in ML-100K's ``u.data`` layout (user, item, rating, time; tabs)."""
    from coldrec_lib.data.synthetic import make_synthetic
    data = make_synthetic(n_users=80, n_items=150, seed=seed)
    frame = data.frame.assign(user=data.frame["user"] + 1)
    folder.mkdir()
    frame[["user", "item", "rating", "timestamp"]].astype(int).to_csv(
        folder / "u.data", sep="\t", header=False, index=False)
    return folder


def test_results_of_two_data_folders_never_replace_each_other(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folders = [write_u_data(tmp_path / name, seed) for name, seed in (("a", 0), ("b", 1))]
    saved = []
    for folder in folders:
        assert main(["run", "foundations", "--dataset", "ml-100k", "--data-path", str(folder),
                     "--set", "max_epochs=1"]) == 0
        assert "replacing" not in capsys.readouterr().out
        files = sorted((tmp_path / "results").glob("*.json"))
        saved.append(json.loads(files[-1].read_text()) if len(files) == len(saved) + 1 else None)
    assert None not in saved, "the second folder's run replaced the first one's results"
    for folder, table in zip(folders, saved):
        assert table["data"]["path"] == str(folder.resolve())
    assert saved[0]["data"]["sha256"] != saved[1]["data"]["sha256"]
    # the same files in another folder are the same data: same digest, same results name
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "u.data").write_bytes((folders[0] / "u.data").read_bytes())
    assert main(["run", "foundations", "--dataset", "ml-100k", "--data-path",
                 str(tmp_path / "copy"), "--set", "max_epochs=1"]) == 0
    assert "replacing the earlier file" in capsys.readouterr().out
