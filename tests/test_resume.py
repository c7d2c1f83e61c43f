"""Checkpoints that cannot corrupt a result: a truncated file names itself, a killed
save leaves no temporary files for ever, and a model is only reloaded when it was made on the
same data, split, settings and seed."""
import os

import pandas as pd
import pytest
import torch

from coldrec_lib.evaluation import Evaluator
from coldrec_lib.experiments import ract as experiment
from coldrec_lib.models.ract import RaCTConfig
from coldrec_lib.training import (Checkpoints, checkpoint_args, fingerprint, fit,
                                  load_checkpoint, save_checkpoint)
from test_training import Quadratic


def train(checkpoints, calls):
    model = Quadratic()

    def batches(epoch):
        calls.append(epoch)
        return [torch.tensor([0.0])]
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, max_epochs=3,
                 progress=False, desc="quadratic", **checkpoint_args(checkpoints, "quadratic"))
    return model, result


def test_a_truncated_checkpoint_is_an_error_that_names_it(tmp_path):
    path = save_checkpoint({"w": torch.arange(1000.0)}, tmp_path / "model.pt")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"checkpoint {path} cannot be read .*truncated"):
        load_checkpoint(path)


def test_temporary_files_of_a_killed_save_are_cleaned_on_the_next_save_and_load(tmp_path):
    path = tmp_path / "model.pt"
    for name in (".model.pt.abc123.tmp", ".model.pt.x.tmp"):  # what a SIGKILL leaves behind
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".other.pt.abc.tmp").write_bytes(b"another checkpoint's")
    save_checkpoint({"x": torch.ones(1)}, path)
    assert sorted(os.listdir(tmp_path)) == [".other.pt.abc.tmp", "model.pt"]
    (tmp_path / ".model.pt.def.tmp").write_bytes(b"half")
    load_checkpoint(path)
    assert sorted(os.listdir(tmp_path)) == [".other.pt.abc.tmp", "model.pt"]


def test_fingerprint_sees_data_split_and_settings():
    frame = pd.DataFrame({"user": [0, 0, 1], "item": [1, 2, 3]})
    assert fingerprint(frame, {"lr": 0.1}, 0) == fingerprint(frame.copy(), {"lr": 0.1}, 0)
    assert fingerprint(frame, {"lr": 0.1}, 0) != fingerprint(frame.iloc[:2], {"lr": 0.1}, 0)
    assert fingerprint(frame, {"lr": 0.1}, 0) != fingerprint(frame, {"lr": 0.2}, 0)
    assert fingerprint(frame, {"lr": 0.1}, 0) != fingerprint(frame, {"lr": 0.1}, 1)
    assert fingerprint(torch.tensor([1, 2])) != fingerprint(torch.tensor([2, 1]))


def test_fit_resumes_a_finished_model_of_the_same_identity_only(tmp_path, capsys):
    calls = []
    trained, first = train(Checkpoints.at(tmp_path, "data", 0), calls)
    assert calls == [1, 2, 3]
    resumed, again = train(Checkpoints.at(tmp_path, "data", 0), calls)
    assert calls == [1, 2, 3]  # not trained again
    assert "loaded the finished model" in capsys.readouterr().out
    assert torch.equal(resumed.w, trained.w) and again.history == first.history
    with pytest.raises(ValueError, match="quadratic.pt was made on other data, split, settings "
                                         "or seed"):
        train(Checkpoints.at(tmp_path, "other data", 0), calls)
    # without a folder, nothing is written or read
    train(Checkpoints.at(None, "data", 0), calls)
    assert calls == [1, 2, 3, 1, 2, 3]


TINY = {"synthetic": dict(n_users=300, n_items=150), "n_valid": 40, "n_test": 40,
        "min_rating": None,
        "ract": dict(actor=dict(hidden_dims=(32,), latent_dim=8, batch_size=50, anneal_steps=100),
                     critic=dict(hidden_dims=(16, 8), lr=1e-3), actor_epochs=2, critic_epochs=2,
                     finetune_epochs=2, finetune_lr=1e-3, patience=10)}


def ract_trainer(checkpoint_dir, n_valid):
    settings = {**TINY, "n_valid": n_valid}
    _, split = experiment.load_split("synthetic", settings, seed=0)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    return experiment.make_trainer(split, RaCTConfig(**TINY["ract"]), valid, 0,
                                   checkpoint_dir=checkpoint_dir, progress=False)


def test_ract_refuses_stage_checkpoints_made_on_another_split(tmp_path, capsys):
    ract_trainer(tmp_path, n_valid=40).run(until=1)
    ract_trainer(tmp_path, n_valid=40).run(until=1)  # the same split: loaded, and says so
    assert "stage 1: loaded from" in capsys.readouterr().out
    # more validation users: the checkpoint's training users include new validation users
    with pytest.raises(ValueError, match="stage1.pt was written by a different run .*data"):
        ract_trainer(tmp_path, n_valid=60).run_stage(1)
    # the same split, another selection metric: stage 1 would have kept another epoch
    other_metric = ract_trainer(tmp_path, n_valid=40)
    other_metric.metric = "Recall@20"
    with pytest.raises(ValueError, match="stage1.pt was written by a different run .*metric"):
        other_metric.run_stage(1)


def test_a_partly_resumed_metatl_run_gives_the_rows_of_an_uninterrupted_one(tmp_path, capsys):
    """Each model draws from its own seeded generator: loading SASRec and the ablation from
    their checkpoints and training MetaTL gives exactly the rows of a straight run."""
    from coldrec_lib.experiments import metatl
    small = ["synthetic.n_users=240", "synthetic.n_items=120", "max_epochs=2",
             "sasrec_epochs=2", "batches_per_epoch=3", "k_values=3"]
    overrides = dict(item.split("=", 1) for item in small)
    straight = metatl.run("synthetic", "smoke", overrides=overrides)
    resumed_dir = tmp_path / "ck"
    metatl.run("synthetic", "smoke", overrides=overrides, checkpoint_dir=resumed_dir)
    (resumed_dir / "MetaTL_K=3.pt").unlink()  # killed after the ablation: MetaTL retrains
    capsys.readouterr()
    resumed = metatl.run("synthetic", "smoke", overrides=overrides, checkpoint_dir=resumed_dir)
    printed = capsys.readouterr().out
    assert "SASRec: loaded the finished model" in printed and "ablation: loaded" in printed
    assert resumed.rows == straight.rows


def resumed_after_first_model(experiment, overrides, first, checkpoint_dir, capsys):
    """A straight run of ``experiment`` that keeps its checkpoints, and the same run resumed as
    if killed after model ``first`` (every later checkpoint deleted, the next one half-written)."""
    straight = experiment.run("synthetic", "smoke", overrides=overrides,
                              checkpoint_dir=checkpoint_dir)
    saved = sorted(checkpoint_dir.glob("*.pt"), key=lambda path: path.stat().st_mtime_ns)
    names = [path.name for path in saved]
    kept = names.index(Checkpoints(checkpoint_dir, "").path(first).name)
    for path in saved[kept + 1:]:
        path.unlink()
    identity = load_checkpoint(saved[kept])["identity"]
    save_checkpoint({"model": {}, "identity": identity, "finished": False}, saved[kept + 1])
    capsys.readouterr()
    resumed = experiment.run("synthetic", "smoke", overrides=overrides,
                             checkpoint_dir=checkpoint_dir)
    printed = capsys.readouterr().out
    assert f"{first}: loaded the finished model" in printed
    assert "from an interrupted run; training again" in printed
    written = [table.save_json(checkpoint_dir / f"{name}.json").read_bytes()
               for name, table in (("straight", straight), ("resumed", resumed))]
    assert written[0] == written[1]  # every cell, no wall times
    return straight, resumed


def test_a_sequential_run_killed_after_bpr_resumes_to_the_same_table(tmp_path, capsys):
    from coldrec_lib.experiments import sequential
    overrides = {"synthetic.n_users": "150", "synthetic.n_items": "60", "max_epochs": "2",
                 "bpr_epochs": "2", "backbone.max_len": "10", "backbone.dim": "16"}
    straight, resumed = resumed_after_first_model(sequential, overrides, "BPR-MF",
                                                  tmp_path / "ck", capsys)
    assert len(resumed.rows) == 14 and resumed.rows == straight.rows


def test_a_cmml_run_killed_after_the_first_variant_resumes_to_the_same_table(tmp_path, capsys):
    from coldrec_lib.experiments import cmml
    overrides = {"synthetic.n_users": "300", "synthetic.n_items": "200",
                 "synthetic.n_scenarios": "120", "mf_epochs": "3", "max_epochs": "2",
                 "batches_per_epoch": "2", "support_curve": "4", "hidden": "16"}
    straight, resumed = resumed_after_first_model(cmml, overrides, next(iter(cmml.CMML_VARIANTS)),
                                                  tmp_path / "ck", capsys)
    assert len(resumed.rows) > len(cmml.CMML_VARIANTS) and resumed.rows == straight.rows


def test_a_model_trained_with_other_threads_is_not_resumed(tmp_path):
    threads = torch.get_num_threads()
    train(Checkpoints.at(tmp_path, "data", 0), [])
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(ValueError, match=f"quadratic.pt was trained with {threads} torch "
                                             f"threads and this run uses {threads + 1}"):
            train(Checkpoints.at(tmp_path, "data", 0), [])
    finally:
        torch.set_num_threads(threads)
    train(Checkpoints.at(tmp_path, "data", 0), calls := [])
    assert calls == []  # the same threads: loaded
