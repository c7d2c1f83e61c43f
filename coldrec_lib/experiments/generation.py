"""Autoregressive generation experiment (notebook `05_autoregressive_generation`): a GPT-2
next-item model decoded with every strategy of `coldrec_lib.generation`, against one-pass top-K
baselines, on each user's last 10 items held out as a set (Volodkevich et al., arXiv 2409.17730).

Data as in the paper: items with >= 5 users, users with >= 20 items; the last 10 items of every
user are the horizon, earlier items train all models; users are split 50/50 (seeded) into
validation and test. Models are selected on validation next-item NDCG@10 (the first held-out
item). Test metrics: set-based NDCG / Recall / MAP@10 over the 10 held-out items, coverage, and
the per-position curves (columns ``hit p<j>`` and ``NDCG p<=<j>``).

Every row is one (model, strategy); ``sweep`` says which plot it belongs to: ``main`` (the
strategy table), ``temperature`` or ``sequences``. A trained model's row records its best epoch,
the epochs it ran and its cap. Baselines: SASRec+, BERT4Rec and BPR-MF (trained), popularity and
the most frequent successor of the last item (counted).

`run_chains` is the setting where generation must beat one-pass top-K (item chains,
`data.mechanisms.generation`; section "Where the mechanism must help").
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..data import Interactions, Sequences, filter_min_counts, last_n_horizon
from ..data.mechanisms.generation import make_chains
from ..data.splits import EvalSet, Split
from ..evaluation import Evaluator, FullRanking, ResultsTable, eval_mode, full_scores
from ..generation import (BeamSearch, Greedy, RankedLists, Sampling, TopK, generate_lists,
                          seen_items)
from ..metrics import horizon_curves
from ..models.bpr_mf import BPRMF, BPRMFConfig, pair_batches
from ..models.gpt2rec import GPT2Rec, GPT2RecConfig
from ..models.popularity import Popularity
from ..models.bert4rec import BERT4Rec, BERT4RecConfig
from ..models.sasrec import SASRec, SASRecConfig
from ..models.sequential import next_item_batches
from ..models.successor import MostFrequentSuccessor
from ..training import (Checkpoints, FitResult, checkpoint_args, default_device, fit,
                        seed_everything)
from . import apply_overrides, for_dataset, get_data, preset_settings, sequential

HORIZON = 10
PROTOCOL = FullRanking(ks=(HORIZON,))
METRICS = [f"NDCG@{HORIZON}", f"Recall@{HORIZON}", f"MAP@{HORIZON}", f"Coverage@{HORIZON}"]

# The paper's NDCG@10 over the 10-item horizon (workshop version) and the authors' code
# (dalibra/autoregressive-generation-strategies-longterm-seqrec) run on ML-100K, one seed, 471
# test users: NDCG@10, Recall@10.
PAPER = {"ml-1m": {"greedy": 0.174, "beam search (10 beams)": 0.168, "RRA (20 seq., T=0.3)": 0.197,
                   "RRA (100 seq.)": 0.200},
         "ml-20m": {"greedy": 0.190, "beam search (10 beams)": 0.181,
                    "RRA (20 seq., T=0.5)": 0.2085, "RRA (100 seq.)": 0.213, "SASRec": 0.132,
                    "BERT4Rec": 0.145}}
AUTHORS_ML100K = {"top-K": (0.155, 0.143), "greedy": (0.137, 0.122),
                  "beam search (5 beams)": (0.129, 0.116),
                  "RRA (30 seq., T=0.6, top-20)": (0.143, 0.132)}

_STRATEGIES = dict(beams=5, temperature=0.6, top_k=20, n_sequences=30,
                   temperatures=(0.3, 0.6, 1.0, 1.5), sequences=(1, 10, 30, 60))
# Trained to convergence with the sequential experiment's recipe (notebook 06): its patience and
# epoch cap, and its backbones' batch size and learning rate (GPT-2's too); a patience of 5 stops
# the transformers while they still improve. ~16-19 CPU minutes per ML-100K seed (one thread):
# GPT-2 6.7 s an epoch (best epoch 19 of 39, seed 0), SASRec+ 6.1 s, BERT4Rec 5.1 s (58-75 best
# epochs in notebook 06), the strategies 37 s.
_CONVERGED = sequential.settings_for("ml-100k", "full")
_RECIPE = {key: _CONVERGED["backbone"][key] for key in ("batch_size", "lr")}
_REAL = dict(min_item=5, min_user=20, max_epochs=_CONVERGED["max_epochs"],
             patience=_CONVERGED["patience"], **_STRATEGIES)


def converged(backbone: str, **changes) -> dict:
    """The sequential full preset's settings of ``backbone`` (its shared and per-model ones),
    with ``changes``."""
    return {**_CONVERGED["backbone"], **_CONVERGED["models"].get(backbone, {}), **changes}


# the paper's BERT4Rec baseline: hidden 64, 2 layers, 2 heads, mask probability 0.2
_BERT4REC = dict(max_len=50, dim=64, n_layers=2, n_heads=2, mask_prob=0.2)
PRESETS = {
    "smoke": {"*": dict(synthetic=dict(n_users=300, n_items=200, min_len=22, max_len=50),
                        min_item=1, min_user=20, max_epochs=12, patience=4,
                        gpt2=dict(context=48, dim=32, batch_size=64, lr=3e-3),
                        # the baselines' transformers at GPT-2's rate: at their default 1e-3,
                        # twelve epochs leave SASRec+ at popularity's level, unlike on real data
                        sasrec=dict(max_len=48, dim=32, n_layers=1, n_heads=1, lr=3e-3),
                        bert4rec=dict(max_len=48, dim=32, n_layers=1, n_heads=1, lr=3e-3),
                        bpr=dict(dim=32, lr=1e-2), beams=3, temperature=0.6, top_k=20,
                        n_sequences=10, temperatures=(0.3, 1.0), sequences=(1, 5, 10))},
    "full": {
        "ml-100k": dict(gpt2=dict(_RECIPE), sasrec=converged("SASRec"),
                        bert4rec=converged("BERT4Rec", **_BERT4REC), bpr=dict(), **_REAL),
        "ml-1m": dict(gpt2=dict(_RECIPE), sasrec=converged("SASRec", max_len=128),
                      bert4rec=converged("BERT4Rec", **dict(_BERT4REC, max_len=128)), bpr=dict(),
                      **_REAL),
        "ml-20m": dict(gpt2=dict(dim=256, batch_size=256), sasrec=dict(max_len=128, dim=256),
                       bert4rec=dict(_BERT4REC, max_len=128),
                       bpr=dict(dim=256, batch_size=8192), **_REAL),
        "*": dict(synthetic=dict(n_users=2000, n_items=800, min_len=22, max_len=80), min_item=5,
                  min_user=20, max_epochs=60, patience=8, gpt2=dict(context=64),
                  sasrec=dict(max_len=64), bert4rec=dict(_BERT4REC, max_len=64), bpr=dict(),
                  **_STRATEGIES),
    },
}


def settings_for(dataset: str, preset: str, overrides: dict | None = None) -> dict:
    """The preset's settings for ``dataset`` with ``overrides`` (``{"gpt2.dim": "128"}``)."""
    table = preset_settings(PRESETS, preset)
    return apply_overrides(for_dataset(table.get(dataset, table["*"]), dataset), overrides,
                           f"preset {preset!r} on {dataset}")


def load_split(dataset: str, settings: dict, seed: int = 0,
               data_path: str | None = None) -> tuple[Interactions, Split]:
    """The paper's filters (items >= 5 users, then users >= 20 items) and the last-10 horizon."""
    data = get_data(dataset, data_path, seed, **settings.get("synthetic", {}))
    data = filter_min_counts(data, min_user=settings["min_user"], min_item=settings["min_item"])
    return data, last_n_horizon(data, n=HORIZON, valid_fraction=0.5, seed=seed)


def first_targets(eval_set: EvalSet, n: int) -> EvalSet:
    """The same users with only their first ``n`` held-out items as targets; an error names the
    first user with fewer (a horizon longer than a user's held-out items)."""
    lengths = eval_set.targets.lengths
    if (lengths < n).any():
        row = int((lengths < n).nonzero()[0])
        raise ValueError(f"{eval_set.name}: a horizon of {n} items, but user "
                         f"{int(eval_set.users[row])} has only {int(lengths[row])} held out")
    rows = torch.arange(len(eval_set))
    targets = Sequences(eval_set.targets.first(rows, n).reshape(-1),
                        torch.arange(0, n * len(eval_set) + 1, n))
    return EvalSet(eval_set.users, eval_set.history, targets, f"{eval_set.name} (first {n})",
                   eval_set.excluded)


# ---------------------------------------------------------------------- training
MODELS = ("GPT-2", "SASRec+", "BERT4Rec", "BPR-MF")
COUNTED = ("Popularity", "Successor")  # counted on the training sequences, not trained


def counted_models(split: Split, device=None) -> dict:
    """The baselines that count: popularity and the most frequent successor of the last item."""
    return {"Popularity": Popularity(split.train, split.n_items).to(device),
            "Successor": MostFrequentSuccessor(split.train, split.n_items).to(device)}


def train(name: str, split: Split, settings: dict, valid: Evaluator, generator: torch.Generator,
          device=None, progress: bool = False,
          checkpoints: Checkpoints | None = None) -> tuple[torch.nn.Module, FitResult]:
    """Model ``name`` (one of `MODELS`) with the preset's ``settings``, early-stopped on
    validation next-item NDCG@10. GPT-2 learns next-item prediction on every user's last
    ``context + 1`` training items, one window per user per epoch (the paper's loader);
    SASRec+ and BERT4Rec train on their own batches (`SequentialBackbone.epoch_batches`:
    sliding windows, the cloze task for BERT4Rec). With ``checkpoints`` a finished model is
    loaded instead of trained again."""
    sequences = split.train_sequences()
    if name == "GPT-2":
        config = GPT2RecConfig(**settings["gpt2"])
        model = GPT2Rec(split.n_items, config).to(device)
        batches = lambda epoch: next_item_batches(sequences, config.context,  # noqa: E731
                                                  config.batch_size, generator, device=device)
    elif name in ("SASRec+", "BERT4Rec"):
        config = (SASRecConfig(**settings["sasrec"]) if name == "SASRec+"
                  else BERT4RecConfig(**settings["bert4rec"]))
        model = (SASRec if name == "SASRec+" else BERT4Rec)(split.n_items, config).to(device)
        batches = lambda epoch: model.epoch_batches(sequences, generator,  # noqa: E731
                                                    device=device)
    elif name == "BPR-MF":
        config = BPRMFConfig(**settings["bpr"])
        model = BPRMF(split.n_users, split.n_items, config).to(device)
        batches = lambda epoch: pair_batches(split.train, split.n_items,  # noqa: E731
                                             config.batch_size, generator, device)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=getattr(config, "weight_decay", 0.0))
    result = fit(model, optimizer, batches, valid, "NDCG@10", settings["max_epochs"],
                 settings["patience"], progress=progress, desc=name,
                 **checkpoint_args(checkpoints, name))
    return model, result


# ---------------------------------------------------------------------- strategies
def runs(settings: dict) -> list[tuple[str, str, object]]:
    """(sweep, model name, strategy): the baselines' top-K, then GPT-2 with every strategy."""
    baselines = [("main", name, TopK()) for name in MODELS[1:] + COUNTED]
    return baselines + [(sweep, "GPT-2", strategy) for sweep, strategy in strategies(settings)]


def strategies(settings: dict) -> list[tuple[str, object]]:
    """(sweep, strategy) pairs: the main table, then the temperature and sequence sweeps."""
    t, top_k, n = settings["temperature"], settings["top_k"], settings["n_sequences"]
    main = [TopK(), Greedy(), BeamSearch(settings["beams"]), Sampling(t, top_k),
            Sampling(t, top_k, n, "rra"), Sampling(t, top_k, n, "ra")]
    out = [("main", s) for s in main]
    out += [("temperature", Sampling(temp, top_k, n, "rra"))
            for temp in settings["temperatures"] if temp != t]
    out += [("sequences", Sampling(t, top_k, s, "rra"))
            for s in settings["sequences"] if s not in (1, n)]
    return out


def evaluate_lists(lists: torch.Tensor, eval_set: EvalSet, evaluator: Evaluator) -> dict:
    """Set metrics (by the evaluator), the per-position curves and the share of recommended
    items already in the user's history (``seen@10``: 0 unless the masking is broken)."""
    result = evaluator.evaluate(RankedLists(eval_set.users, lists, evaluator.n_items))
    rows = torch.arange(len(eval_set))
    seen = sum(float(seen_items(eval_set.batch(chunk).history, evaluator.n_items)
                     .gather(1, lists[chunk]).sum()) for chunk in rows.split(1024)) / lists.numel()
    curves = horizon_curves(lists, eval_set.targets.first(rows, HORIZON))
    columns = {f"{m}": v for m, v in result.metrics.items() if m in METRICS}
    columns[f"seen@{HORIZON}"] = seen
    columns.update({f"hit p{j + 1}": float(v) for j, v in enumerate(curves["hit"].mean(0))})
    columns.update({f"NDCG p<={j + 1}": float(v) for j, v in enumerate(curves["NDCG"].mean(0))})
    return columns


def run(dataset: str = "synthetic", preset: str = "smoke", seed: int = 0,
        data_path: str | None = None, progress: bool = False, overrides: dict | None = None,
        checkpoint_dir=None) -> ResultsTable:
    settings = settings_for(dataset, preset, overrides)
    data, split = load_split(dataset, settings, seed, data_path)
    device = default_device()
    valid = Evaluator(first_targets(split.valid, 1), PROTOCOL, split.n_items, device=device)
    test = Evaluator(first_targets(split.test, HORIZON), PROTOCOL, split.n_items, device=device)

    checkpoints = Checkpoints.at(checkpoint_dir, split, settings, seed)
    trained = {name: train(name, split, settings, valid, seed_everything(seed), device, progress,
                           checkpoints) for name in MODELS}

    table = ResultsTable(f"Generation strategies over the last {HORIZON} items ({split.description}"
                         f", seed {seed})", data.name, preset)
    table.protocols["set"] = (f"{test.describe()}; the {HORIZON} held-out items as a set, "
                              f"{len(test.eval_set)} test users")
    models = {name: model for name, (model, _) in trained.items()} | counted_models(split, device)
    fits = {name: result for name, (_, result) in trained.items()}
    table.rows += strategy_rows(models, fits, runs(settings), test, seed, progress,
                                settings["max_epochs"])
    return table


def strategy_rows(models: dict, fits: dict[str, FitResult], to_run, test: Evaluator,
                  seed: int = 0, progress: bool = False,
                  max_epochs: int | None = None) -> list[dict]:
    """One row per ``(sweep, model name, strategy)`` of ``to_run`` (`runs`): the lists of
    ``models[name]`` on the test users, scored by `evaluate_lists`, with the model's selection
    (best epoch, validation next-item NDCG@10), the epochs it trained and its cap
    (``max_epochs``) when it was trained (``fits``)."""
    rows = []
    for sweep, name, strategy in to_run:
        lists = generate_lists(models[name], strategy, test.eval_set, HORIZON, seed=seed,
                               progress=progress)
        selection = fits.get(name)
        row = {"model": name, "protocol": "set", "strategy": strategy.name, "sweep": sweep,
               "T": getattr(strategy, "temperature", float("nan")),
               "sequences": getattr(strategy, "n_sequences", float("nan")),
               "best epoch": selection.best_epoch if selection else float("nan"),
               "epochs": len(selection.history) if selection else float("nan"),
               "max epochs": max_epochs if selection and max_epochs else float("nan"),
               "valid next NDCG@10": selection.best_value if selection else float("nan")}
        row.update(evaluate_lists(lists, test.eval_set, test))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- mechanism
# Item chains (`data.mechanisms.generation`): GPT-2 reads whole sequences (context >= max_len)
CHAINS = dict(chains=dict(n_users=1000, n_items=200, min_len=30, max_len=40, follow=0.85),
              gpt2=dict(context=48, dim=32, n_layers=1, batch_size=32, lr=5e-3),
              max_epochs=40, patience=5, beams=5, temperature=0.6, top_k=20, n_sequences=30)


def chain_strategies(settings: dict) -> list:
    """One-pass top-K, then the strategies that feed their items back."""
    return [TopK(), Greedy(), BeamSearch(settings["beams"]),
            Sampling(settings["temperature"], settings["top_k"], settings["n_sequences"])]


class ChainRun(NamedTuple):
    rows: list[dict]    # one per strategy of `chain_strategies`
    model: GPT2Rec
    fit: FitResult
    data: Interactions
    test: Evaluator


def run_chains(settings: dict = CHAINS, seed: int = 0, device=None) -> ChainRun:
    """GPT-2 trained on the item chains and decoded with `chain_strategies` (the horizon split,
    selection and rows of `run`)."""
    data = make_chains(seed=seed, **settings["chains"])
    split = last_n_horizon(data, n=HORIZON, valid_fraction=0.5, seed=seed)
    valid = Evaluator(first_targets(split.valid, 1), PROTOCOL, split.n_items, device=device)
    test = Evaluator(first_targets(split.test, HORIZON), PROTOCOL, split.n_items, device=device)
    model, result = train("GPT-2", split, settings, valid, seed_everything(seed), device)
    to_run = [("main", "GPT-2", strategy) for strategy in chain_strategies(settings)]
    rows = strategy_rows({"GPT-2": model}, {"GPT-2": result}, to_run, test, seed,
                         max_epochs=settings["max_epochs"])
    return ChainRun(rows, model, result, data, test)


@torch.no_grad()
def chain_ranks(run: ChainRun, steps: int = HORIZON) -> torch.Tensor:
    """``[N, steps]``: where the one-pass scores (`TopK`'s) of each test user rank the j-th main
    successor of their last history item among the unseen items (1 = first; inf when the user
    has seen it)."""
    features, data = run.data.item_features, run.data
    main = torch.zeros(data.n_items + 1, dtype=torch.long)
    main[data.to_internal_items(features.index)] = torch.as_tensor(
        data.to_internal_items(features["main"]))
    batch = run.test.eval_set.batch(torch.arange(len(run.test.eval_set)))
    device = next(run.model.parameters()).device
    with eval_mode(run.model):
        scores = full_scores(run.model, batch.to(device), data.n_items).cpu()
    item, ranks = batch.history[:, -1], []
    for _ in range(steps):
        item = main[item]
        score = scores.gather(1, item.unsqueeze(1))
        ranks.append(torch.where(score.squeeze(1) > float("-inf"),
                                 (scores > score).sum(1).float() + 1, float("inf")))
    return torch.stack(ranks, 1)
