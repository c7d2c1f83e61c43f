import os

import pytest
import torch

from coldrec_lib.training import (TrainingDiverged, fit, load_checkpoint, save_checkpoint,
                                  seed_everything)


class Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([5.0]))

    def loss(self, batch):
        return ((self.w - batch) ** 2).sum()


class ScriptedEvaluator:
    """Returns a scripted validation curve: the best value is at epoch 2."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def evaluate(self, model):
        self.calls += 1
        return type("R", (), {"metrics": {"NDCG@10": self.values[self.calls - 1]}})()


def test_early_stopping_restores_the_best_epoch(tmp_path):
    model = Quadratic()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    snapshots = []

    class Recording(ScriptedEvaluator):
        def evaluate(self, m):
            snapshots.append(float(m.w.detach()))
            return super().evaluate(m)

    result = fit(model, optimizer, lambda e: [torch.tensor([0.0])], Recording([0.1, 0.5, 0.4, 0.3, 0.2]),
                 max_epochs=10, patience=2, progress=False, checkpoint=tmp_path / "best.pt")
    assert result.best_epoch == 2 and len(result.history) == 4  # stopped after 2 stale epochs
    assert float(model.w.detach()) == pytest.approx(snapshots[1])
    saved = load_checkpoint(tmp_path / "best.pt")
    assert saved["epoch"] == 2 and float(saved["model"]["w"]) == pytest.approx(snapshots[1])
    assert result.history[0]["loss"] > result.history[-1]["loss"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"x": torch.tensor([1.0])}, path)

    def broken_save(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"x": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert float(load_checkpoint(path)["x"]) == 1.0  # the old checkpoint survived intact
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temp file left behind


class NotWeights:
    pass


def test_checkpoints_load_with_weights_only(tmp_path):
    torch.save({"obj": NotWeights()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")


def test_seed_everything_repeats_draws():
    g = seed_everything(7)
    a = torch.rand(3), torch.rand(3, generator=g)
    g = seed_everything(7)
    b = torch.rand(3), torch.rand(3, generator=g)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_callback_rows_and_wall_clock_budget(monkeypatch):
    """A fake clock: each epoch of training takes 10 s, each callback 100 s (not counted)."""
    clock = [0.0]
    monkeypatch.setattr("coldrec_lib.training.time.perf_counter", lambda: clock[0])

    def batches(epoch):
        clock[0] += 10.0
        return [torch.tensor([0.0])]

    def callback(epoch, model):
        clock[0] += 100.0
        return {"test w": float(model.w.detach()), "called at": epoch}

    model = Quadratic()
    result = fit(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, max_epochs=10,
                 progress=False, callback=callback, time_budget=25.0)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]  # 30 s >= 25 s: stop
    assert [row["elapsed"] for row in result.history] == [10.0, 20.0, 30.0]
    assert [row["called at"] for row in result.history] == [1, 2, 3]
    assert result.history[-1]["test w"] == pytest.approx(float(model.w.detach()))


def test_a_diverging_fit_stops_with_an_error_naming_the_model_and_epoch(capsys):
    def fit_quadratic(lr):
        model = Quadratic()
        return fit(model, torch.optim.SGD(model.parameters(), lr=lr),
                   lambda epoch: [torch.tensor([0.0])], max_epochs=4, progress=False,
                   desc="quadratic")
    fit_quadratic(10.0)  # the loss grows 19**2 times an epoch: said, before it overflows
    assert ("quadratic: the training loss of epoch 3 (3.26e+06) is over 1000 times that of "
            "epoch 1 (25)") in capsys.readouterr().out
    with pytest.raises(TrainingDiverged, match="quadratic diverged in epoch 2: its training "
                                               "loss .inf. or weights are not finite"):
        fit_quadratic(1e30)  # w = -1e31 after epoch 1: its square overflows float32
