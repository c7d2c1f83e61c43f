"""Training utilities shared by every model: seeding, device choice, a fit loop with progress
bars and early stopping on a validation metric, and atomic checkpoints.
"""
from __future__ import annotations

import copy
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a torch generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device() -> torch.device:
    """The GPU when there is one (e.g. on Colab), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to a temporary file beside ``path`` and rename it: an interrupted save
    never leaves a half-written checkpoint, and the previous one survives until the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


# ---------------------------------------------------------------------- fit loop
@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)  # one row per epoch

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        rows = [r for r in self.history if key in r]
        return [r["epoch"] for r in rows], [r[key] for r in rows]


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
        train_batches: Callable[[int], Iterable], evaluator=None, metric: str = "NDCG@10",
        max_epochs: int = 10, patience: int = 3, eval_every: int = 1,
        checkpoint: str | os.PathLike | None = None, grad_clip: float | None = None,
        scheduler=None, progress: bool = True, desc: str = "train",
        callback: Callable[[int, torch.nn.Module], dict] | None = None,
        time_budget: float | None = None) -> FitResult:
    """Train ``model`` by ``model.loss(batch)`` over ``train_batches(epoch)``.

    Every ``eval_every`` epochs the ``evaluator`` measures ``metric`` on validation data; training
    stops after ``patience`` evaluations without improvement, and the best weights are restored
    (and written to ``checkpoint`` when given). Without an evaluator the last epoch is kept.
    ``callback(epoch, model) -> dict`` adds its values (e.g. metrics on other sets) to the
    epoch's history row; ``time_budget`` (seconds of wall time) stops training after the epoch
    that exhausts it. Each row records ``elapsed``: the wall time of training and validation so
    far, the callbacks' time excluded.
    """
    begin, outside = time.perf_counter(), 0.0
    history: list[dict] = []
    best_value, best_epoch, best_state, stale = -float("inf"), 0, None, 0
    bar = tqdm(range(1, max_epochs + 1), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for batch in train_batches(epoch):
            loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch, "loss": total / max(count, 1), "seconds": time.perf_counter() - start}
        if evaluator is not None and (epoch % eval_every == 0 or epoch == max_epochs):
            value = evaluator.evaluate(model).metrics[metric]
            row[f"valid {metric}"] = value
            if value > best_value:
                best_value, best_epoch, stale = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint is not None:
                    save_checkpoint({"model": best_state, "epoch": epoch, "value": value}, checkpoint)
            else:
                stale += 1
        row["elapsed"] = time.perf_counter() - begin - outside
        if callback is not None:
            row.update(callback(epoch, model))
            outside = time.perf_counter() - begin - row["elapsed"]
        history.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()
                         if k not in ("epoch", "seconds", "elapsed")})
        if (evaluator is not None and stale >= patience) or (
                time_budget is not None and row["elapsed"] >= time_budget):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = history[-1]["epoch"] if history else 0
    return FitResult(best_epoch, best_value, history)
