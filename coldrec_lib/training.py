"""Training utilities shared by every model: seeding, device choice, a fit loop with progress
bars and early stopping on a validation metric, and atomic checkpoints that a resumed run
reloads only when they were made on the same data, split, settings and seed (`fingerprint`).
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import hashlib
import math
import os
import random
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a torch generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def seed_model(seed: int, name: str) -> torch.Generator:
    """`seed_everything` with a seed derived from the run's ``seed`` and the model's ``name``
    (stable across processes): each model of an experiment draws its own numbers, the same
    whether the models before it were trained or loaded from checkpoints."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return seed_everything(int.from_bytes(digest[:4], "big"))


def default_device() -> torch.device:
    """The GPU when there is one (e.g. on Colab), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` to a temporary file beside ``path`` and rename it: an interrupted save
    never leaves a half-written checkpoint, and the previous one survives until the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
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
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled); a file
    that cannot be read (truncated, not a checkpoint) is an error that names it."""
    path = Path(path)
    remove_stale_temporaries(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                         "it is truncated or not a checkpoint: delete it") from error


def remove_stale_temporaries(path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that a killed `save_checkpoint` left beside ``path``."""
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------- resuming
def fingerprint(*parts) -> str:
    """A short sha256 of ``parts``: frames, arrays, tensors, dataclasses, dicts, sequences,
    objects (through their attributes) and plain values. What a checkpoint was trained on (the
    training frame, the user partition, the settings, the seed) goes into its identity."""
    digest = hashlib.sha256()
    _feed(digest, parts)
    return digest.hexdigest()[:16]


def _feed(digest, value) -> None:
    if isinstance(value, pd.DataFrame):
        digest.update(repr(list(value.columns)).encode())
        value = pd.util.hash_pandas_object(value, index=False).to_numpy()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        digest.update(f"array {value.dtype} {value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif dataclasses.is_dataclass(value) or (hasattr(value, "__dict__") and not callable(value)):
        items = ({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
                 if dataclasses.is_dataclass(value) else vars(value))
        digest.update(type(value).__name__.encode())
        _feed(digest, items)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


@dataclass(frozen=True)
class Checkpoints:
    """A folder of finished models (one ``<name>.pt`` each) and the identity they must carry:
    `fit` loads a finished model of the same identity instead of training it again."""

    folder: Path
    identity: str

    @classmethod
    def at(cls, folder, *identity_parts) -> "Checkpoints | None":
        """``None`` without a folder, else the folder with ``fingerprint(*identity_parts)``."""
        return None if folder is None else cls(Path(folder), fingerprint(*identity_parts))

    def path(self, name: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.=-]+', '_', name)}.pt"


def checkpoint_args(checkpoints: Checkpoints | None, name: str) -> dict:
    """The ``checkpoint`` and ``identity`` arguments of `fit` for model ``name`` (none without a
    folder)."""
    if checkpoints is None:
        return {}
    return {"checkpoint": checkpoints.path(name), "identity": checkpoints.identity}


def _finished_fit(model, path: Path, identity: str, desc: str) -> "FitResult | None":
    """A finished `fit` of ``identity`` loaded from ``path`` into ``model``; ``None`` when there
    is none (or it was interrupted); an error when it was made by a different run."""
    if not path.exists():
        return None
    state = load_checkpoint(path, map_location=next(model.parameters()).device)
    if state.get("identity") != identity:
        raise ValueError(f"checkpoint {path} was made on other data, split, settings or seed "
                         f"(identity {state.get('identity')}, this run {identity}); delete it or "
                         "choose another checkpoint folder")
    if not state.get("finished"):
        print(f"{desc}: {path} is from an interrupted run; training again")
        return None
    threads = torch.get_num_threads()
    if "threads" not in state:
        raise ValueError(f"checkpoint {path} does not say how many torch threads trained it "
                         "(the numbers differ with the threads); delete it")
    if state["threads"] != threads:
        raise ValueError(f"checkpoint {path} was trained with {state['threads']} torch threads "
                         f"and this run uses {threads}: the numbers differ with the threads; "
                         f"resume with --threads {state['threads']}, or delete it")
    model.load_state_dict(state["model"])
    result = FitResult(**state["result"])
    print(f"{desc}: loaded the finished model from {path} instead of training it "
          f"(best epoch {result.best_epoch})")
    return result


@contextmanager
def phase(desc: str, progress: bool = True):
    """A one-step progress bar around a phase without steps of its own (reading the data,
    making the split): shows what runs now, and how long it took."""
    with tqdm(total=1, desc=desc, disable=not progress) as bar:
        yield
        bar.update()


# ---------------------------------------------------------------------- fit loop
DIVERGED_COLUMN = "diverged in epoch"  # a results row of a model whose training diverged


class TrainingDiverged(ValueError):
    """A model's training loss or weights stopped being finite numbers (e.g. a learning rate
    far too high); names the model and the epoch."""

    def __init__(self, model: str, epoch: int, loss: float):
        super().__init__(f"{model} diverged in epoch {epoch}: its training loss ({loss:.3g}) "
                         "or weights are not finite numbers (is the learning rate too high?)")
        self.model, self.epoch, self.loss = model, epoch, loss


@dataclass
class FitResult:
    best_epoch: int
    best_value: float
    history: list[dict] = field(default_factory=list)  # one row per epoch

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        rows = [r for r in self.history if key in r]
        return [r["epoch"] for r in rows], [r[key] for r in rows]


def stopped_by_cap(best_epoch, patience, max_epochs):
    """Whether a model (or each row of Series) was stopped by its epoch cap while still improving:
    its best epoch plus the patience it ran under passes the cap, so the run failed. A missing
    (NaN) best epoch is a model that was not trained: not stopped."""
    return best_epoch + patience > max_epochs


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
        train_batches: Callable[[int], Iterable], evaluator=None, metric: str = "NDCG@10",
        max_epochs: int = 10, patience: int = 3, eval_every: int = 1,
        checkpoint: str | os.PathLike | None = None, grad_clip: float | None = None,
        scheduler=None, progress: bool = True, desc: str = "train",
        identity: str | None = None, min_epochs: int = 0, min_delta: float = 0.0,
        keep_best: bool = True, callback: Callable[[int, torch.nn.Module], dict] | None = None,
        time_budget: float | None = None) -> FitResult:
    """Train ``model`` by ``model.loss(batch)`` over ``train_batches(epoch)``.

    Every ``eval_every`` epochs the ``evaluator`` measures ``metric`` on validation data; training
    stops after ``patience`` evaluations without an improvement of more than ``min_delta`` (never
    before ``min_epochs``: a plateau rule), and the best weights are restored (and written to
    ``checkpoint`` when given). With ``keep_best=False``, or without an evaluator, the last epoch
    is kept (and reported as the result).
    With ``identity`` too (`Checkpoints`), a finished checkpoint of that identity is loaded
    instead of training, and one of another identity, or trained with another number of torch
    threads (whose kernels round differently), is an error.
    ``callback(epoch, model) -> dict`` adds its values (e.g. metrics on other sets) to the
    epoch's history row; ``time_budget`` (seconds of wall time) stops training after the epoch
    that exhausts it. A loss or weights that are no longer finite stop training with
    `TrainingDiverged`. Each row records ``elapsed``: the wall time of training and validation so
    far, the callbacks' time excluded.
    """
    if checkpoint is not None and identity is not None:
        done = _finished_fit(model, Path(checkpoint), identity, desc)
        if done is not None:
            return done
    begin, outside = time.perf_counter(), 0.0
    history: list[dict] = []
    best_value, best_epoch, best_state, stale, warned = -float("inf"), 0, None, 0, False
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
        if not math.isfinite(row["loss"]) or not all(p.isfinite().all() for p in model.parameters()):
            raise TrainingDiverged(desc, epoch, row["loss"])
        if history and not warned and row["loss"] > 1e3 * abs(history[0]["loss"]):
            warned = True
            print(f"{desc}: the training loss of epoch {epoch} ({row['loss']:.3g}) is over "
                  f"1000 times that of epoch 1 ({history[0]['loss']:.3g}); is the learning "
                  "rate too high?")
        if evaluator is not None and (epoch % eval_every == 0 or epoch == max_epochs):
            value = evaluator.evaluate(model).metrics[metric]
            row[f"valid {metric}"] = value
            if value > best_value + min_delta:
                best_value, best_epoch, stale = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                if checkpoint is not None:
                    save_checkpoint({"model": best_state, "epoch": epoch, "value": value,
                                     "identity": identity, "finished": False}, checkpoint)
            else:
                stale += 1
        row["elapsed"] = time.perf_counter() - begin - outside
        if callback is not None:
            row.update(callback(epoch, model))
            outside = time.perf_counter() - begin - row["elapsed"]
        history.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()
                         if k not in ("epoch", "seconds", "elapsed")})
        if (evaluator is not None and stale >= patience and epoch >= min_epochs) or (
                time_budget is not None and row["elapsed"] >= time_budget):
            break
    if best_state is not None and keep_best:
        model.load_state_dict(best_state)
    elif history:
        best_epoch = history[-1]["epoch"]
        best_value = history[-1].get(f"valid {metric}", best_value)
    result = FitResult(best_epoch, best_value, history)
    if checkpoint is not None:
        save_checkpoint({"model": model.state_dict(), "epoch": best_epoch, "value": best_value,
                         "identity": identity, "finished": True,
                         "threads": torch.get_num_threads(),
                         "result": dataclasses.asdict(result)}, checkpoint)
    return result
