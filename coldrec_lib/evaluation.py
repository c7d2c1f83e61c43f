"""Evaluation protocols as explicit objects, and one evaluator for every model.

A protocol says *what is ranked* (the whole catalogue, or the held-out items among sampled
negatives), *what the model reads* and, separately, *which items are excluded* (masked) from the
ranking, how ties are broken and which metrics are computed. Its ``describe()`` is printed beside
every number (`00_foundations`, section "Two protocols"). The input is the eval set's history
(its ``max_history`` most recent items when the `Evaluator` limits it); the exclusions can add the
set's other seen items (`EvalSet.excluded`, e.g. validation items under RecBole's test protocol,
where the model reads only the training items).

A model takes part by implementing the `coldrec_lib.models.Recommender` contract:
``score(batch) -> [B, n_items + 1]`` and optionally ``score_candidates(batch, candidates)``.
"""
from __future__ import annotations

import json
import math
import platform
import textwrap
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data.datasets import atomic_write_text
from .data.interactions import PAD
from .data.splits import EvalBatch, EvalSet
from .metrics import ranking_metrics

TIES = "ties pessimistic (an equal-scoring item ranks above the target)"


def describe_input(max_history: int | None) -> str:
    return ("input: the user's history" if max_history is None
            else f"input: the user's {max_history} most recent history items")


@dataclass(frozen=True)
class FullRanking:
    """Rank every item of the catalogue. Masked (score -inf): the user's whole history
    (``mask_history``) and the eval set's other seen items (``mask_excluded``, by default as
    ``mask_history``)."""

    ks: tuple[int, ...] = (1, 5, 10, 20)
    mask_history: bool = True
    recall_denominator: str = "R"
    mask_excluded: bool | None = None

    @property
    def masks_excluded(self) -> bool:
        return self.mask_history if self.mask_excluded is None else self.mask_excluded

    def describe(self, n_items: int, max_history: int | None = None) -> str:
        parts = [name for name, on in (("the whole history", self.mask_history),
                                       ("the set's other seen items", self.masks_excluded)) if on]
        masked = "masked: " + " and ".join(parts) if parts else "nothing masked"
        return (f"full ranking over all {n_items:,} items; {describe_input(max_history)}; "
                f"{masked}; Recall denominator {self.recall_denominator}; {TIES}")


@dataclass(frozen=True)
class SampledRanking:
    """Rank the held-out items among ``n_negatives`` negatives drawn uniformly, once, with
    ``seed``, from the items that are neither seen (history, other seen items) nor held out."""

    n_negatives: int = 100
    seed: int = 0
    ks: tuple[int, ...] = (1, 5, 10)
    recall_denominator: str = "R"

    def describe(self, n_items: int, max_history: int | None = None) -> str:
        return (f"held-out item(s) + {self.n_negatives} sampled negatives (uniform over the "
                f"{n_items:,} items minus seen items and targets, fixed by seed {self.seed}); "
                f"{describe_input(max_history)}; {TIES}")


@dataclass
class EvalResult:
    model: str
    protocol: str
    eval_set: str
    n_users: int
    metrics: dict[str, float]
    per_user: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def __str__(self) -> str:
        values = "  ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return f"{self.model} | {self.eval_set} ({self.n_users:,} users)\n  {values}\n  protocol: {self.protocol}"


def paired_difference(a: EvalResult, b: EvalResult, metric: str = "MRR") -> tuple[float, float]:
    """Mean per-user difference ``a - b`` of ``metric`` on the same users, and two standard errors
    of that mean: a difference smaller than its two standard errors is within noise (notebooks
    01, sections 6 and 8, and 03, section 6)."""
    if a.n_users != b.n_users:
        raise ValueError(f"paired_difference needs results on the same users; got {a.n_users:,} "
                         f"and {b.n_users:,}")
    difference = a.per_user[metric] - b.per_user[metric]
    return float(difference.mean()), 2 * float(difference.std()) / len(difference) ** 0.5


@contextmanager
def eval_mode(*models):
    """Put ``models`` in eval mode (dropout off, ``z = mu``) and restore each one's mode after."""
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)


def full_scores(model, batch: EvalBatch, n_items: int, model_input: EvalBatch | None = None,
                mask_history: bool = True, mask_excluded: bool = True) -> torch.Tensor:
    """``model.score`` over the catalogue ``[B, n_items + 1]`` as float, with the padding item,
    (``mask_history``) the whole history of ``batch`` and (``mask_excluded``) its other seen
    items at -inf. ``model_input`` is what the model reads (default ``batch``)."""
    scores = model.score(batch if model_input is None else model_input).float().clone()
    expected = (len(batch.history), n_items + 1)
    if tuple(scores.shape) != expected:
        raise ValueError(f"{type(model).__name__}.score returned shape {tuple(scores.shape)}; "
                         f"expected {expected} (column 0 is the padding item)")
    scores[:, PAD] = float("-inf")
    if mask_history:
        scores.scatter_(1, batch.history, float("-inf"))
    if mask_excluded and batch.excluded is not None:
        scores.scatter_(1, batch.excluded, float("-inf"))
    return scores


MAX_SCORES_PER_BATCH = 1 << 24  # 64 MB of float32 scores; ranking holds a few copies


class Evaluator:
    """Scores any `Recommender` on an `EvalSet` under one protocol.

    Sampled negatives are drawn once here, so every model is ranked against the same ones.
    Users are scored ``batch_size`` at a time (the results do not depend on it); by default
    1,024, fewer when a batch's scores over the catalogue would pass `MAX_SCORES_PER_BATCH`.
    """

    def __init__(self, eval_set: EvalSet, protocol, n_items: int, batch_size: int | None = None,
                 max_history: int | None = None, device=None):
        self.eval_set, self.protocol, self.n_items = eval_set, protocol, n_items
        self.batch_size = batch_size or max(1, min(1024, MAX_SCORES_PER_BATCH // (n_items + 1)))
        self.max_history = max_history
        self.device = torch.device(device) if device is not None else None
        self.negatives = (self._draw_negatives() if isinstance(protocol, SampledRanking)
                          else None)

    def describe(self) -> str:
        return self.protocol.describe(self.n_items, self.max_history)

    def _draw_negatives(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.protocol.seed)
        chunks = []
        for rows in torch.arange(len(self.eval_set)).split(self.batch_size):
            batch = self.eval_set.batch(rows)
            noise = torch.rand(len(rows), self.n_items + 1, generator=generator)
            noise[:, PAD] = -1
            noise.scatter_(1, batch.history, -1)
            noise.scatter_(1, batch.targets, -1)
            if batch.excluded is not None:
                noise.scatter_(1, batch.excluded, -1)
            allowed = (noise >= 0).sum(1)
            if (allowed < self.protocol.n_negatives).any():
                raise ValueError(f"{self.eval_set.name}: a user has only {int(allowed.min())} "
                                 f"items left to sample {self.protocol.n_negatives} negatives from")
            chunks.append(noise.topk(self.protocol.n_negatives, dim=1).indices)
        return torch.cat(chunks)

    @torch.no_grad()
    def evaluate(self, model, name: str | None = None, progress: bool = False) -> EvalResult:
        device = self.device or _model_device(model)
        per_user: dict[str, list[torch.Tensor]] = {}
        top_items = []
        rows_all = torch.arange(len(self.eval_set))
        with eval_mode(model):
            for rows in tqdm(rows_all.split(self.batch_size), disable=not progress, desc="eval",
                             leave=False):
                batch = self.eval_set.batch(rows).to(device)
                scores, relevant, candidates = self._score(model, batch, rows)
                values, top = ranking_metrics(scores, relevant, self.protocol.ks,
                                              self.protocol.recall_denominator)
                for key, value in values.items():
                    per_user.setdefault(key, []).append(value.cpu())
                top_k = top[:, :max(self.protocol.ks)]
                top_items.append((candidates.gather(1, top_k) if candidates is not None
                                  else top_k).cpu())
        per_user_t = {k: torch.cat(v) for k, v in per_user.items()}
        metrics = {k: float(v.mean()) for k, v in per_user_t.items()}
        top_all = torch.cat(top_items)
        for k in self.protocol.ks:
            metrics[f"Coverage@{k}"] = len(torch.unique(top_all[:, :k])) / self.n_items
        return EvalResult(name or type(model).__name__, self.describe(), self.eval_set.name,
                          len(self.eval_set), metrics, per_user_t)

    def _score(self, model, batch: EvalBatch, rows):
        """-> (scores [B, C], relevant [B, C], candidate item ids [B, C] or None for full).
        The model sees the ``max_history`` most recent items; the mask covers the whole history."""
        model_input = batch.recent(self.max_history)
        if isinstance(self.protocol, SampledRanking):
            candidates = torch.cat([batch.targets, self.negatives[rows].to(batch.targets.device)], 1)
            if hasattr(model, "score_candidates"):
                scores = model.score_candidates(model_input, candidates)
            else:
                scores = model.score(model_input).gather(1, candidates)
            relevant = torch.zeros_like(candidates, dtype=torch.bool)
            relevant[:, :batch.targets.shape[1]] = batch.targets != PAD
            scores = scores.float().masked_fill(~relevant & (candidates == PAD), float("-inf"))
            return scores, relevant, candidates
        scores = full_scores(model, batch, self.n_items, model_input, self.protocol.mask_history,
                             self.protocol.masks_excluded)
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant.scatter_(1, batch.targets, True)
        relevant[:, PAD] = False
        return scores, relevant, None


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


# ---------------------------------------------------------------------- results tables
@dataclass
class ResultsTable:
    """Rows of results (model -> metrics, and the number of users they were computed on) with
    the data, preset, machine, protocol, seed and settings overrides that produced them, and
    ``diagnostics`` that are not one number per row (a learned part's curve, per model). Printed
    as a table that fits a terminal (`format`); saved as JSON (atomically) with everything."""

    title: str
    dataset: str
    preset: str
    rows: list[dict] = field(default_factory=list)
    protocols: dict[str, str] = field(default_factory=dict)
    machine: str = field(default_factory=lambda: describe_machine())
    seed: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    diagnostics: dict[str, dict] = field(default_factory=dict)  # model -> curves, per-epoch lists
    data: dict[str, str] = field(default_factory=dict)  # read from a folder: its path and sha256

    def add(self, result: EvalResult, protocol_name: str = "", **extra) -> None:
        key = protocol_name or result.protocol
        self.protocols.setdefault(key, result.protocol)
        row = {"model": result.model, "protocol": key, "users": result.n_users}
        row.update(extra)
        row.update(result.metrics)
        self.rows.append(row)

    def to_frame(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """The rows; with ``metrics``, only those columns after model, protocol and users."""
        frame = pd.DataFrame(self.rows)
        first = [c for c in ("model", "protocol", "users") if c in frame.columns]
        keep = first + [c for c in frame.columns if c not in first
                        and (metrics is None or c in metrics)]
        return frame[keep]

    def to_markdown(self, metrics: list[str] | None = None) -> str:
        """A Markdown table (for pasting a reference run into a notebook)."""
        frame = self.to_frame(metrics)
        cells = [["–" if v != v else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
                 for row in frame.itertuples(index=False)]
        lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])

    def format(self, width: int = 100) -> str:
        """The table in lines of at most ``width`` characters: the title and protocols wrapped,
        the columns in blocks that each repeat the model and protocol columns."""
        source = f" ({self.data['path']}, sha256 {self.data['sha256'][:8]})" if self.data else ""
        header = (f"{self.title} | data: {self.dataset}{source} | preset: {self.preset}"
                  + ("" if self.seed is None else f" | seed: {self.seed}")
                  + "".join(f" | {k}={v}" for k, v in self.overrides.items())
                  + f" | {self.machine}")
        lines = textwrap.wrap(header, width, subsequent_indent="  ")
        frame = self.to_frame()
        keys = ["model", "protocol"]
        text = lambda f: f.to_string(index=False, float_format=lambda v: f"{v:.4f}")  # noqa: E731
        block: list[str] = []
        for column in [c for c in frame.columns if c not in keys]:
            if block and max(map(len, text(frame[keys + block + [column]]).splitlines())) > width:
                lines += [text(frame[keys + block]), ""]
                block = []
            block.append(column)
        lines.append(text(frame[keys + block]))
        for key, description in self.protocols.items():
            item = f"[{key}] {description}" if key != description else f"- {description}"
            lines += textwrap.wrap(item, width, subsequent_indent="    ")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def save_json(self, path) -> Path:
        """Valid JSON: a missing number (NaN, e.g. no temperature for beam search) is ``null``."""
        path = Path(path)
        atomic_write_text(path, json.dumps(json_numbers(asdict(self)), indent=2,
                                           allow_nan=False, default=float))
        return path

    @classmethod
    def load_json(cls, path) -> "ResultsTable":
        """The table `save_json` wrote, with its ``null`` numbers NaN again."""
        fields = json.loads(Path(path).read_text())
        fields["rows"] = [{key: float("nan") if value is None else value
                           for key, value in row.items()} for row in fields["rows"]]
        return cls(**fields)


def json_numbers(value):
    """``value`` with every float a plain one, NaN and infinities as ``None``."""
    if isinstance(value, dict):
        return {key: json_numbers(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_numbers(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def evaluate_models(models: dict, evaluators: dict[str, Evaluator],
                    table: ResultsTable | None = None, extra: dict[str, dict] | None = None,
                    progress: bool = False, **columns) -> dict[tuple[str, str], EvalResult]:
    """Every model (``{name: model}``) under every protocol (``{name: Evaluator}``), on the same
    users: ``{(model name, protocol name): EvalResult}``. With ``table``, each result is added as
    a row, with ``columns`` (e.g. ``K=3``) and the model's ``extra`` ones (e.g. its best epoch).
    ``progress`` shows a bar over the (model, protocol) pairs."""
    results = {}
    pairs = [(name, model, protocol_name, evaluator) for name, model in models.items()
             for protocol_name, evaluator in evaluators.items()]
    for name, model, protocol_name, evaluator in tqdm(pairs, desc="evaluation",
                                                      disable=not progress):
        results[name, protocol_name] = result = evaluator.evaluate(model, name)
        if table is not None:
            table.add(result, protocol_name, **columns, **(extra or {}).get(name, {}))
    return results


def describe_machine() -> str:
    device = f"GPU {torch.cuda.get_device_name(0)}, " if torch.cuda.is_available() else ""
    return (f"{device}CPU ({torch.get_num_threads()} threads), torch {torch.__version__}, "
            f"{platform.system()}")


# ---------------------------------------------------------------------- recommendations
@torch.no_grad()
def recommend(model, data, raw_user, k: int = 10, raw_history=None) -> pd.DataFrame:
    """Top-``k`` items for one user, in *raw* ids, with the item side information when there is
    some. The history (default: the user's interactions in ``data``) is the model's input and is
    never recommended again.

    A user who is not in ``data`` (cold start: e.g. ``"brand-new-user"``) is recommended for from
    ``raw_history``, the raw ids of the few items they interacted with, oldest first: models that
    read the history (popularity, SASRec, MetaTL, Mult-VAE) need nothing else; a model with one
    embedding per training user cannot score them and says so. A model that predicts from the
    history (the sequence models, GPT-2, MetaTL: ``model.min_history`` items at least) refuses a
    shorter one, e.g. ``raw_history=[]``, with a `DataError`; popularity, BPR-MF and Mult-VAE
    need none. Only items outside the history are returned: fewer than ``k`` (with a warning)
    when fewer are left.
    """
    from .data.errors import DataError

    try:
        user = int(data.to_internal_users([raw_user])[0])
    except KeyError:
        user = None
        if raw_history is None or len(raw_history) == 0:
            raise DataError(data.name, "raw_user", f"a user of {data.name}, or raw_history=[...] "
                            f"(the raw item ids a new user interacted with); {raw_user!r} is "
                            "not in the data and no history was given") from None
    if raw_history is None:
        history = data.frame.loc[data.frame["user"] == user, "item"].to_numpy()
    else:
        known = set(data.raw_items[1:])
        unknown = [raw for raw in raw_history if raw not in known]
        if unknown:
            raise DataError(data.name, "raw_history", f"raw item ids of {data.name} (the model "
                            f"has no embedding for others); unknown: {unknown[:10]!r}")
        history = data.to_internal_items(raw_history)
    needed = getattr(model, "min_history", 0)
    if len(history) < needed:
        raise DataError(data.name, "raw_history", f"at least {needed} item(s): "
                        f"{type(model).__name__} predicts from the history; got {len(history)} "
                        "(popularity, BPR-MF or Mult-VAE recommend without one)")
    # a new user gets id n_users: out of range for a per-user table, so it can never silently
    # read another user's row
    users = torch.tensor([data.n_users if user is None else user])
    batch = EvalBatch(users, torch.tensor(history, dtype=torch.long).reshape(1, -1),
                      torch.zeros(1, 1, dtype=torch.long)).to(_model_device(model))
    with eval_mode(model):
        try:
            scores = full_scores(model, batch, data.n_items)
        except IndexError:
            if user is not None:
                raise
            raise ValueError(f"{type(model).__name__} scores only the users it was trained on "
                             f"and {raw_user!r} is new; use a model that reads the history "
                             "(e.g. SASRec, MetaTL, Mult-VAE or popularity)") from None
    available = int((scores > float("-inf")).sum())  # neither the padding item nor the history
    if available < k:
        warnings.warn(f"{data.name}: only {available} of {data.n_items} items are outside the "
                      f"history of {raw_user!r}; returning {available}, not k={k}", stacklevel=2)
    top = scores.topk(min(k, available), dim=1)
    out = pd.DataFrame({"item": data.to_raw_items(top.indices[0]), "score": top.values[0].cpu()})
    if data.item_features is not None:
        features = data.item_features.loc[top.indices[0].cpu().numpy()].reset_index(drop=True)
        out = pd.concat([out, features], axis=1)
    return out


# ---------------------------------------------------------------------- scenario ranking
@dataclass(frozen=True)
class ScenarioRanking:
    """Scenario cold start (`03_cmml`): every evaluated user of a held-out scenario ranks *all*
    candidate items of the scenario after the model has read the scenario's support pairs
    (at most ``support_limit`` of them, default: all the evaluation set holds)."""

    ks: tuple[int, ...] = (1, 3, 5, 10, 20, 50, 100)
    support_limit: int | None = None

    def describe(self, n_items: int | None = None) -> str:
        support = "all" if self.support_limit is None else f"the first {self.support_limit}"
        return (f"each evaluated user ranks all candidate items of the scenario (nothing masked; "
                f"support: {support} of the other half of the users' pairs); Recall denominator "
                f"R; averaged over (scenario, user); {TIES}")


class ScenarioEvaluator:
    """Scores a scenario model (`coldrec_lib.models.scenario`) on a `ScenarioEvalSet`: batches
    of up to ``scenarios_per_batch`` scenarios of similar size (`ScenarioEvalSet.buckets`: little
    padding; in index order for a model that ``reads_other_scenarios`` of its batch) are adapted
    at once, their users scored against all
    candidates in chunks of at most ``max_pairs`` (user, item) pairs, ranked by
    `ranking_metrics`."""

    def __init__(self, eval_set, protocol: ScenarioRanking = ScenarioRanking(),
                 scenarios_per_batch: int = 16, max_pairs: int = 1 << 17, device=None):
        self.eval_set, self.protocol = eval_set, protocol
        self.scenarios_per_batch, self.max_pairs = scenarios_per_batch, max_pairs
        self.device = torch.device(device) if device is not None else None

    def describe(self) -> str:
        return self.protocol.describe()

    @torch.no_grad()
    def evaluate(self, model, name: str | None = None, progress: bool = False) -> EvalResult:
        device = self.device or _model_device(model)
        per_user: dict[str, list[torch.Tensor]] = {}
        with eval_mode(model):
            groups = self.eval_set.buckets(self.scenarios_per_batch)
            if getattr(model, "reads_other_scenarios", False):  # its scores depend on the batch
                groups = torch.arange(len(self.eval_set)).split(self.scenarios_per_batch)
            for scenarios in tqdm(groups, disable=not progress, desc="eval", leave=False):
                batch = self.eval_set.batch(scenarios, self.protocol.support_limit).to(device)
                state = model.adapt(batch)
                n, n_candidates = batch.candidates.shape
                chunk = max(1, self.max_pairs // (n * n_candidates))
                for start in range(0, batch.users.shape[1], chunk):
                    users = slice(start, start + chunk)
                    scores = model.pair_scores(state, batch.users[:, users], batch.candidates,
                                               grid=True).float()
                    scores = scores.masked_fill(~batch.candidate_mask.unsqueeze(1), float("-inf"))
                    rows = batch.user_mask[:, users]
                    values, _ = ranking_metrics(scores[rows], batch.relevant[:, users][rows],
                                                self.protocol.ks)
                    for key, value in values.items():
                        if key.startswith(("Recall@", "NDCG@")):
                            per_user.setdefault(key, []).append(value.cpu())
        per_user_t = {k: torch.cat(v) for k, v in per_user.items()}
        return EvalResult(name or type(model).__name__, self.describe(), self.eval_set.name,
                          len(next(iter(per_user_t.values()))),
                          {k: float(v.mean()) for k, v in per_user_t.items()}, per_user_t)
