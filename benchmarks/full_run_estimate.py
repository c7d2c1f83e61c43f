"""How long each notebook's full preset takes on a Colab T4: an ESTIMATE from counted FLOPs and
counted GPU operations, not a measurement (no T4 was used). CPU minutes measured per seed of the
ML-100K references are printed beside it.

    python benchmarks/full_run_estimate.py [--out benchmarks/full_run_estimate.json]
        [--notebooks 02_melo 04_ract] [--efficiency 0.3]

Method, one notebook at a time, on the dataset the notebook's full run uses with a GPU:

1. **Data of the dataset's shape.** ML-100K is the real file (``--data-path``). ML-1M, ML-20M and
   Electronics are not in this workspace: `shape_sample` draws a *sample* of their shape (the real
   catalogue, the real mean items per user, ``sample_users`` users; items by a Zipf(0.5)
   popularity, every item present at least once), and each model's batches per epoch on the
   sample are scaled to the full dataset by the ratio of users (a model whose epoch is one pass
   over users or windows: FLOPs per epoch grow with the data, not the shapes of a batch).
   Tensor shapes (batch, sequence length, catalogue, hidden sizes) are the preset's own, so the
   FLOPs of one batch are those of the full run.
2. **Counted, not timed.** A few training batches of every model the full run trains go through
   the library's own step (`training.fit` with the experiment's model, optimizer and batches),
   and one validation pass is counted on a head of the validation users and scaled to all of
   them. `OpCounter` (a ``TorchDispatchMode``) counts the aten operations run, a proxy for GPU
   kernel launches, and their FLOPs with `torch.utils.flop_counter`'s formulas (matrix
   products, convolutions, attention: elementwise work is not counted). The optimizers
   count as on a GPU: ``foreach`` (one multi-tensor operation per group, torch's CUDA default),
   not the CPU default of one loop per parameter.
3. **Scaled to a run**: per model, (training + validation) per epoch x epochs, at two epoch
   counts: ``reference`` = the committed ML-100K reference's best epoch (mean over seeds) plus
   this preset's patience, at most the cap; and ``cap`` = the preset's epoch cap. One-off work
   (test evaluation, decoding strategies, embedding pre-training) is added once.
4. **T4 time** = FLOPs / (8.1 TFLOP/s FP32 peak x ``efficiency``) + operations x 10 us (launch
   and Python overhead per operation: small models are launch-bound). Both terms are printed.

Assumptions that the figures rest on are printed with them and kept in the JSON. One torch
thread; a few CPU-seconds per model. Ends with one line of JSON.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from melo import ML100K, matmul_peak_gflops  # noqa: E402

from coldrec_lib.data import Interactions, leave_one_out, load_dataset  # noqa: E402
from coldrec_lib.training import fit  # noqa: E402

REFERENCES = Path(__file__).resolve().parents[1] / "coldrec_lib" / "reference_runs"
T4_FP32_PEAK = 8.1e12       # FLOP/s, NVIDIA's T4 datasheet (FP32)
EFFICIENCY = 0.3            # share of the peak reached by the counted FLOPs (an assumption)
LAUNCH_S = 10e-6            # seconds per aten operation on a GPU (launch + Python dispatch)

# Full-dataset shapes (users, items, interactions) the samples stand in for.
SHAPES = {
    "ml-1m": dict(users=6_040, items=3_706, interactions=1_000_209, min_len=20,
                  source="MovieLens 1M ratings.dat"),
    # Liang et al. 2018 (Mult-VAE), ratings > 3.5, users with >= 5: what RaCT trains on
    "ml-20m": dict(users=136_677, items=20_108, interactions=10_000_000, min_len=5,
                   source="MovieLens 20M after RaCT's filter (Liang et al. 2018, Table 1)"),
    # ASSUMED: MetaTL's files are derived from Amazon Electronics; their own counts are not
    # recorded here, so the 5-core Electronics shape (McAuley et al.) stands in
    "electronics": dict(users=192_403, items=63_001, interactions=1_689_188, min_len=5,
                        source="ASSUMED: Amazon Electronics 5-core (MetaTL's files' own counts "
                               "are not recorded)"),
}
ML_RATINGS = (0.06, 0.11, 0.26, 0.35, 0.22)  # MovieLens 1M's share of ratings 1..5


# ---------------------------------------------------------------------- the estimate
def t4_seconds(flops: float, ops: float, efficiency: float = EFFICIENCY,
               peak: float = T4_FP32_PEAK, launch_s: float = LAUNCH_S) -> dict[str, float]:
    """The T4 estimate of ``flops`` FLOPs in ``ops`` GPU operations: compute
    ``flops / (peak * efficiency)`` plus launch overhead ``ops * launch_s``, in seconds."""
    compute, launch = flops / (peak * efficiency), ops * launch_s
    return {"compute_s": compute, "launch_s": launch, "total_s": compute + launch}


def t4_minutes(flops: float, ops: float, efficiency: float = EFFICIENCY) -> float:
    return t4_seconds(flops, ops, efficiency)["total_s"] / 60


_SKIPPED = {torch.ops.aten.is_contiguous.default, torch.ops.aten.is_contiguous.memory_format,
            torch.ops.aten.size.default, torch.ops.aten.sym_size.default,
            torch.ops.aten.stride.default, torch.ops.aten.sym_stride.default,
            torch.ops.aten.storage_offset.default, torch.ops.aten.numel.default,
            torch.ops.aten.sym_numel.default, torch.ops.aten.dim.default,
            torch.ops.prim.layout.default}


class OpCounter(TorchDispatchMode):
    """Counts the aten operations run (one a kernel launch on a GPU, roughly: views launch none,
    a few operations launch several) and their FLOPs with `torch.utils.flop_counter`'s formulas,
    as `FlopCounterMode` does (an operation without a formula is decomposed first) but without
    its module tracking, whose hooks `torch.autograd.grad` inside a model (s2Meta's inner
    steps) does not support."""

    def __init__(self):
        super().__init__()
        self.calls, self.flops = 0, 0
        self.registry = FlopCounterMode(display=False).flop_registry

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SKIPPED:
            return NotImplemented
        if isinstance(func, torch._ops.HigherOrderOperator):
            return func(*args, **kwargs)
        if func not in self.registry and func is not torch.ops.prim.device.default:
            with self:
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = func(*args, **kwargs)
        self.calls += 1
        packet = func._overloadpacket
        if packet in self.registry:
            self.flops += self.registry[packet](*args, **kwargs, out_val=out)
        return out


def count(fn) -> tuple[float, float]:
    """(FLOPs, aten operations) of calling ``fn()``."""
    with OpCounter() as counter:
        fn()
    return float(counter.flops), float(counter.calls)


def gpu_like_optimizers() -> None:
    """Adam et al. pick ``foreach`` (multi-tensor kernels) on CUDA and a per-parameter loop on
    the CPU; count as on the GPU."""
    import torch.optim.optimizer as optimizer_module
    def foreach_as_on_cuda(params, differentiable, use_fused=False):
        return False, not differentiable

    optimizer_module._default_to_fused_or_foreach = foreach_as_on_cuda


@dataclass
class Cost:
    """One model of a run: per epoch (training + one validation) and once."""

    model: str
    train_flops: float
    train_ops: float
    valid_flops: float = 0.0
    valid_ops: float = 0.0
    epochs_reference: float = 0.0
    epochs_cap: int = 0
    valid_every: int = 1          # validations per epoch = 1 / valid_every
    once_flops: float = 0.0       # test evaluation, decoding, pre-training
    once_ops: float = 0.0
    once_host_flops: float = 0.0  # float64 work the library runs on the host CPU (EASE)
    note: str = ""

    def epoch(self) -> tuple[float, float]:
        return (self.train_flops + self.valid_flops / self.valid_every,
                self.train_ops + self.valid_ops / self.valid_every)

    def total(self, epochs: float) -> tuple[float, float]:
        flops, ops = self.epoch()
        return flops * epochs + self.once_flops, ops * epochs + self.once_ops


def fit_cost(model, optimizer, batches: list, n_batches: float, k: int = 3,
             grad_clip: float | None = None) -> tuple[float, float]:
    """FLOPs and operations of ``n_batches`` training batches through `training.fit`, counted on
    ``k`` of ``batches`` (after one uncounted warm-up batch: the optimizer's state)."""
    fit(model, optimizer, lambda epoch: batches[:1], max_epochs=1, progress=False,
        grad_clip=grad_clip)
    k = max(1, min(k, len(batches) - 1)) if len(batches) > 1 else 1
    sample = batches[1:1 + k] if len(batches) > 1 else batches[:1]
    flops, ops = count(lambda: fit(model, optimizer, lambda epoch: sample, max_epochs=1,
                                   progress=False, grad_clip=grad_clip))
    return flops / len(sample) * n_batches, ops / len(sample) * n_batches


class _Head:
    """The first ``n`` users of an `EvalSet` (an evaluator then scores only them)."""

    def __init__(self, eval_set, n: int):
        self._eval_set, self._n = eval_set, n

    def __len__(self):
        return self._n

    def __getattr__(self, name):
        return getattr(self._eval_set, name)


def evaluator_cost(evaluator, model, n_users: float, head: int | None = None
                   ) -> tuple[float, float]:
    """FLOPs and operations of ``evaluator.evaluate(model)`` over ``n_users`` users, counted on
    its first batch of users: FLOPs scale by users, operations by batches."""
    head = min(len(evaluator.eval_set), head or evaluator.batch_size)
    probe = copy.copy(evaluator)
    probe.eval_set = _Head(evaluator.eval_set, head)
    flops, ops = count(lambda: probe.evaluate(model))
    return flops / head * n_users, ops * math.ceil(n_users / evaluator.batch_size)


def reference(experiment: str) -> dict:
    return json.loads((REFERENCES / f"{experiment}-ml-100k.json").read_text())


def reference_rows(experiment: str, key: str) -> dict[str, float]:
    """Model -> its mean ``key`` over the reference's seeds (the rows hold the means)."""
    out = {}
    for row in reference(experiment)["rows"]:
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.setdefault(row["model"], float(value))
    return out


def cpu_minutes(experiment: str) -> float:
    """Mean CPU minutes per seed of the committed ML-100K reference (one thread)."""
    seconds = reference(experiment)["seconds_per_seed"]
    return sum(seconds) / len(seconds) / 60


def epochs(best: float | None, patience: int, cap: int) -> float:
    """Epochs a run trains: best epoch + patience, at most the cap (the cap without a best)."""
    return cap if best is None else min(best + patience, cap)


# ---------------------------------------------------------------------- data of a shape
def shape_sample(dataset: str, sample_users: int, seed: int = 0) -> tuple[Interactions, float]:
    """A sample of ``dataset``'s shape (`SHAPES`) and the ratio full users / sample users.

    ``sample_users`` users with lengths ``min_len + Geometric`` of the dataset's mean; items by a
    Zipf(0.5) popularity over the whole catalogue (every item dealt to one random user first, so
    the catalogue is complete), ratings by MovieLens 1M's rating shares, times increasing along a
    user's sequence from a random start. FLOPs depend on these shapes, not on what the users
    like, so the library's structured generator (`make_synthetic`, O(users x items x length)) is
    not needed here."""
    shape = SHAPES[dataset]
    rng = np.random.default_rng(seed)
    n_items, mean = shape["items"], shape["interactions"] / shape["users"]
    min_len = shape["min_len"]
    lengths = np.minimum(min_len - 1 + rng.geometric(1 / (mean - min_len + 1), sample_users),
                         n_items)
    popularity = (rng.permutation(n_items) + 1.0) ** -0.5
    items = rng.choice(n_items, int(lengths.sum()), p=popularity / popularity.sum())
    users = np.repeat(np.arange(sample_users), lengths)
    users = np.concatenate([users, rng.integers(sample_users, size=n_items)])
    items = np.concatenate([items, np.arange(n_items)])
    start = rng.integers(0, 10 ** 8, sample_users)
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    position = np.arange(len(users)) - np.searchsorted(users, users)
    frame = pd.DataFrame({"user": users + 1, "item": items + 1,
                          "rating": rng.choice(5, len(users), p=ML_RATINGS) + 1.0,
                          "timestamp": start[users] + 3600 * position})
    data = Interactions.from_frame(frame, name=f"{dataset}-shaped sample",
                                   source="benchmarks/full_run_estimate.py")
    return data, shape["users"] / sample_users


def ml100k(path) -> Interactions:
    """The real ML-100K from ``path``, else downloaded (checksum-verified) into the cache."""
    has_file = path is not None and (Path(path) / "u.data").exists()
    return load_dataset("ml-100k", path=path if has_file else None)


# ---------------------------------------------------------------------- notebooks
def sequential_costs(split, settings, scale: float, reference_name: str, patience: int,
                     cap_backbone: int, cap_bpr: int, names, device="cpu") -> list[Cost]:
    """BPR-MF and the backbones of the `sequential` experiment (06; 00's BPR-MF)."""
    from coldrec_lib.experiments import sequential as experiment
    from coldrec_lib.models import BPRMF, BPRMFConfig, pair_batches
    best = reference_rows(reference_name, "best epoch")
    costs = []
    valid_users = len(split.valid) * scale
    for name in names:
        generator = torch.Generator().manual_seed(0)
        if name == "BPR-MF":
            model = BPRMF(split.n_users, split.n_items, BPRMFConfig())
            batches = list(pair_batches(split.train, split.n_items, model.config.batch_size,
                                        generator))
            optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                         weight_decay=model.config.weight_decay)
            cap = cap_bpr
        else:
            model = experiment.build_backbone(name, split.n_items, settings, device)
            batches = list(model.epoch_batches(split.train_sequences(), generator))
            optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr,
                                         weight_decay=model.config.weight_decay)
            cap = cap_backbone
        flops, ops = fit_cost(model, optimizer, batches, len(batches) * scale)
        valid = experiment.make_evaluator(split.valid, experiment.PROTOCOLS["full, seen masked"],
                                          split, settings, device)
        vflops, vops = evaluator_cost(valid, model, valid_users)
        tflops, tops = evaluator_cost(valid, model, 2 * valid_users)  # two test protocols
        costs.append(Cost(name, flops, ops, vflops, vops, epochs(best.get(name), patience, cap),
                          cap, once_flops=tflops, once_ops=tops))
    return costs


def notebook_00(args) -> dict:
    from coldrec_lib.experiments import sequential
    data = ml100k(args.data_path)
    split = leave_one_out(data)
    settings = sequential.settings_for("ml-100k", "full")
    # 00 trains BPR-MF with patience 5, at most 200 epochs (its PRESETS cell); its reference
    # records no epochs, so the best epoch is the sequential reference's BPR-MF (same model,
    # data and split)
    costs = sequential_costs(split, settings, 1.0, "sequential", 5, 200, 200, ["BPR-MF"])
    return {"dataset": "ml-100k", "data": "real MovieLens 100K", "experiment": "foundations",
            "costs": costs, "assumptions": [
                "00's reference records no epochs: BPR-MF's best epoch is the sequential "
                "reference's (same model, data and split) + 00's patience 5"]}


def notebook_06(args) -> dict:
    from coldrec_lib.experiments import sequential
    data = ml100k(args.data_path)
    split = leave_one_out(data)
    settings = sequential.settings_for("ml-100k", "full")
    costs = sequential_costs(split, settings, 1.0, "sequential", settings["patience"],
                             settings["max_epochs"], settings["bpr_epochs"],
                             ["BPR-MF", *sequential.BACKBONES])
    return {"dataset": "ml-100k", "data": "real MovieLens 100K", "experiment": "sequential",
            "costs": costs, "assumptions": [
                "GRU4Rec's and NARM's operations are counted on the CPU path (`GRURecurrence`, "
                "a few operations per time step); on a GPU they run cuDNN's fused GRU, so their "
                "launch term is an overestimate (an upper bound)"]}


def notebook_05(args) -> dict:
    from coldrec_lib.experiments import generation as experiment
    from coldrec_lib.generation import generate_lists
    settings = experiment.settings_for("ml-1m", "full")
    sample, scale = shape_sample("ml-1m", args.sample_users)
    data, split = _generation_split(experiment, sample, settings)
    valid = experiment.Evaluator(experiment.first_targets(split.valid, 1), experiment.PROTOCOL,
                                 split.n_items)
    test = experiment.Evaluator(experiment.first_targets(split.test, experiment.HORIZON),
                                experiment.PROTOCOL, split.n_items)
    best = reference_rows("generation", "best epoch")
    costs, models = [], {}
    for name in experiment.MODELS:
        captured = {}
        original_fit = experiment.fit

        def capture(model, optimizer, batches, *rest, **kw):
            captured.update(model=model, optimizer=optimizer, batches=batches)
            return experiment.FitResult(0, 0.0, [])

        experiment.fit = capture
        try:
            experiment.train(name, split, settings, valid, torch.Generator().manual_seed(0))
        finally:
            experiment.fit = original_fit
        model, optimizer = captured["model"], captured["optimizer"]
        batches = list(captured["batches"](1))
        flops, ops = fit_cost(model, optimizer, batches, len(batches) * scale)
        vflops, vops = evaluator_cost(valid, model, len(valid.eval_set) * scale)
        models[name] = model
        costs.append(Cost(name, flops, ops, vflops, vops,
                          epochs(best.get(name), settings["patience"], settings["max_epochs"]),
                          settings["max_epochs"]))
    # decoding: every (model, strategy) of the table on every test user, once
    head = min(len(test.eval_set), 64)
    probe = _Head(test.eval_set, head)
    once_flops = once_ops = 0.0
    for sweep, name, strategy in experiment.runs(settings):
        if name not in models:
            continue
        flops, ops = count(lambda: generate_lists(models[name], strategy, probe,
                                                  experiment.HORIZON))
        users = len(test.eval_set) * scale
        once_flops += flops / head * users
        once_ops += ops * math.ceil(users / 64)
    costs.append(Cost("decoding (every strategy, test users)", 0, 0, once_flops=once_flops,
                      once_ops=once_ops))
    return {"dataset": "ml-1m", "data": _sample_note("ml-1m", sample, scale, split.n_items),
            "experiment": "generation", "costs": costs, "assumptions": []}


def _generation_split(experiment, sample, settings):
    from coldrec_lib.data import filter_min_counts, last_n_horizon
    data = filter_min_counts(sample, min_user=settings["min_user"], min_item=settings["min_item"])
    return data, last_n_horizon(data, n=experiment.HORIZON, valid_fraction=0.5, seed=0)


def _sample_note(dataset, sample, scale, n_items) -> str:
    return (f"a {SHAPES[dataset]['users'] / scale:,.0f}-user sample of {dataset}'s shape "
            f"({SHAPES[dataset]['source']}: {SHAPES[dataset]['users']:,} users, "
            f"{SHAPES[dataset]['items']:,} items, {SHAPES[dataset]['interactions']:,} "
            f"interactions), {len(sample):,} interactions, {n_items:,} items after the "
            f"experiment's filters; per-epoch work x {scale:.1f}")


# MetaTL's Electronics new users (../shared/papers/metatl.md): 5,963 with more than 3 items, 30 %
# of them validation users
ELECTRONICS_NEW_USERS = {"valid": round(0.3 * 5_963), "test": 5_963 - round(0.3 * 5_963)}


def notebook_01(args) -> dict:
    from coldrec_lib.data import TaskSampler
    from coldrec_lib.experiments import metatl as experiment
    from coldrec_lib.models.metatl import MetaTL, task_batches
    from coldrec_lib.models.sasrec import SASRec, next_item_batches
    settings = experiment.settings_for("electronics", "full")
    sample, scale = shape_sample("electronics", args.sample_users_electronics)
    # the authors' files come split; the sample is cut by time with the preset's other fraction
    split = experiment.make_split(sample, 0.3, settings["valid_fraction"], seed=0)
    best = reference_rows("metatl", "best epoch")
    patience, k = settings["patience"], settings["k"]
    generator = torch.Generator().manual_seed(0)
    costs = []
    # SASRec: one window per warm user per epoch
    config = settings["sasrec"]
    model = SASRec(split.n_items, config)
    batches = list(next_item_batches(split.train_sequences(), config.max_len, config.batch_size,
                                     generator))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    flops, ops = fit_cost(model, optimizer, batches, len(batches) * scale)
    evaluators = experiment.make_evaluators(split, k, "valid")
    valid_users = ELECTRONICS_NEW_USERS["valid"]
    vflops, vops = evaluator_cost(evaluators["sampled-100"], model, valid_users)
    once = [evaluator_cost(e, model, ELECTRONICS_NEW_USERS["test"]) for e in evaluators.values()]
    costs.append(Cost("SASRec", flops, ops, vflops, vops,
                      epochs(best.get("SASRec"), patience, settings["sasrec_epochs"]),
                      settings["sasrec_epochs"], once_flops=sum(f for f, _ in once),
                      once_ops=sum(o for _, o in once)))
    # MetaTL: batches_per_epoch batches of batch_size K-shot tasks, whatever the data's size;
    # the ablation at K, MetaTL at every K of k_values
    runs = [(experiment.ABLATION, k, False)] + [
        (f"MetaTL K={value}", value, True) for value in sorted(set(settings["k_values"]) | {k})]
    for name, k_value, inner_step in runs:
        config = replace(settings["metatl"], inner_step=inner_step)
        model = MetaTL(split.n_items, config)
        sampler = TaskSampler(split.train_sequences(), k=k_value)
        batches = list(task_batches(sampler, split.n_items, config.batch_size,
                                    settings["batches_per_epoch"] + 1, generator))
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        flops, ops = fit_cost(model, optimizer, batches, settings["batches_per_epoch"])
        evaluators = experiment.make_evaluators(split, k_value, "valid")
        vflops, vops = evaluator_cost(evaluators["sampled-100"], model, valid_users)
        once = [evaluator_cost(e, model, ELECTRONICS_NEW_USERS["test"])
                for e in evaluators.values()]
        reference_name = experiment.ABLATION if not inner_step else "MetaTL"
        costs.append(Cost(name, flops, ops, vflops, vops,
                          epochs(best.get(reference_name), patience, settings["max_epochs"]),
                          settings["max_epochs"], once_flops=sum(f for f, _ in once),
                          once_ops=sum(o for _, o in once)))
    return {"dataset": "electronics",
            "data": _sample_note("electronics", sample, scale, split.n_items),
            "experiment": "metatl", "costs": costs, "assumptions": [
                "Electronics' shape is ASSUMED (Amazon Electronics 5-core: 192,403 users, 63,001 "
                "items, 1.69M interactions); MetaTL's epochs do not depend on it (25 batches of "
                "1,024 tasks), SASRec's and the catalogue-wide scores do",
                f"validation / test new users: {ELECTRONICS_NEW_USERS} (5,963 with > 3 items, "
                "30 % validation)",
                "MetaTL at K = 2, 4, 5 trains as long as at K = 3 (the reference's MetaTL)"]}


class Captured(Exception):
    """Raised by `capturing_fit` once it has what `fit` was called with."""


def capturing_fit(module):
    """Replace ``module.fit`` by one that records its arguments and stops the caller; returns the
    record and a function that puts ``fit`` back."""
    record, original = {}, module.fit

    def capture(model, optimizer, batches, *rest, **kwargs):
        record.update(model=model, optimizer=optimizer, batches=batches, **kwargs)
        raise Captured

    module.fit = capture
    return record, lambda: setattr(module, "fit", original)


def melo_users(n_users: int, settings: dict) -> dict[str, int]:
    """Validation and test users of `melo.split_users` on ``n_users`` users."""
    n_valid = max(1, int(round(settings["valid_fraction"] * (n_users - settings["n_test"]))))
    return {"valid": n_valid, "test": settings["n_test"]}


def notebook_02(args) -> dict:
    from coldrec_lib.data import filter_min_counts
    from coldrec_lib.experiments import melo as experiment
    settings = experiment.settings_for("ml-1m", "full")
    sample, scale = shape_sample("ml-1m", args.sample_users)
    data = filter_min_counts(sample, min_user=settings["min_user"], min_item=settings["min_item"])
    small = dict(settings, n_test=args.sample_users // 5)  # the sample's own held-out users
    sequences, train_users, evaluators = experiment.split_and_evaluators(data, small, seed=0)
    users = melo_users(SHAPES["ml-1m"]["users"], settings)
    best = reference_rows("melo", "best_iteration")
    every, patience = settings["eval_every"], settings["patience"] * settings["eval_every"]
    costs = []
    for backbone in settings["backbones"]:
        for method in experiment.METHODS:
            record, restore = capturing_fit(experiment)
            try:
                experiment.train_model(method, backbone, data.n_items, settings, sequences,
                                       train_users, evaluators["valid"],
                                       torch.Generator().manual_seed(0), "cpu")
            except Captured:
                pass
            finally:
                restore()
            model, optimizer = record["model"], record["optimizer"]
            generator = record["batches"](1)
            batches = [next(generator) for _ in range(3)]
            flops, ops = fit_cost(model, optimizer, batches, every, k=2,
                                  grad_clip=record.get("grad_clip"))
            vflops, vops = count(lambda: evaluators["valid"].evaluate(model))
            n_valid = len(evaluators["valid"].tasks)
            batch = evaluators["valid"].batch_size
            vflops, vops = vflops / n_valid * users["valid"], vops / math.ceil(
                n_valid / batch) * math.ceil(users["valid"] / batch)
            cap = settings["basic_iterations" if method == "Basic" else "iterations"]
            ran = epochs(best.get(method), patience, cap) / every
            tasks = settings["basic_batch" if method == "Basic" else "meta_batch"]
            costs.append(Cost(f"{backbone} {method}", flops, ops, vflops, vops, ran,
                              math.ceil(cap / every), once_flops=vflops / users["valid"]
                              * users["test"], once_ops=vops,
                              note=f"an epoch is {every} meta-iterations of {tasks} tasks"))
    note = _sample_note("ml-1m", sample, scale, data.n_items).split("; per-epoch work")[0]
    return {"dataset": "ml-1m", "data": note + "; an iteration's work does not grow with the data",
            "experiment": "melo", "costs": costs, "assumptions": [
                f"epochs here are {every} meta-iterations (one validation each); 'reference' = "
                f"the ML-100K reference's best iteration (mean over its backbones and seeds) + "
                f"this preset's patience ({patience} iterations)",
                "NARM and BERT4Rec (not in the ML-100K reference) stop when GRU4Rec and SASRec "
                "did there",
                f"validation / test users: {users} of ML-1M's 6,040",
                "MAML and MELO: second-order inner steps counted as the library runs them "
                "(torch.func.vmap over the meta-batch)"]}


def notebook_03(args) -> dict:
    from coldrec_lib.data.scenarios import pretrain_embeddings
    from coldrec_lib.experiments import cmml as experiment
    settings = experiment.settings_for("ml-100k", "full")
    split = experiment.make_split("ml-100k", settings, args.data_path, seed=0)
    generator = torch.Generator().manual_seed(0)
    pflops, pops = count(lambda: pretrain_embeddings(split.train, settings["dim"], 1, generator))
    embeddings = pretrain_embeddings(split.train, settings["dim"], 1, generator)
    valid = experiment.make_evaluator(split.valid, settings, 0)
    test = experiment.make_evaluator(split.test, settings, 1)
    best = reference_rows("cmml", "best_epoch")
    patience = settings["patience"] * settings["eval_every"]
    costs = [Cost("BPR pre-training of the embeddings", 0, 0,
                  once_flops=pflops * settings["mf_epochs"], once_ops=pops * settings["mf_epochs"])]
    for name, model in experiment.build_models(embeddings, settings).items():
        record, restore = capturing_fit(experiment)
        try:
            experiment.train_scenario_model(model, split, settings, generator, valid)
        except Captured:
            pass
        finally:
            restore()
        batch_fn = record["batches"]
        batches = [b for b, _ in zip(batch_fn(1), range(3))]
        flops, ops = fit_cost(model, record["optimizer"], batches, settings["batches_per_epoch"],
                              k=2, grad_clip=record.get("grad_clip"))
        vflops, vops = count(lambda: valid.evaluate(model))
        tflops, tops = count(lambda: test.evaluate(model))
        curve = 1 + len(settings["support_curve"])  # the test, then the support curve
        costs.append(Cost(name, flops, ops, vflops, vops,
                          epochs(best.get(name), patience, settings["max_epochs"]),
                          settings["max_epochs"], valid_every=settings["eval_every"],
                          once_flops=tflops * curve, once_ops=tops * curve))
    return {"dataset": "ml-100k", "data": f"real MovieLens 100K ({split!r})",
            "experiment": "cmml", "costs": costs, "assumptions": [
                "validation every eval_every epochs over all validation scenarios; test "
                "evaluation counted once per model and once per support-curve limit",
                "the GRU context encoder's nn.GRU runs step by step on the CPU (operations "
                "counted there); cuDNN fuses it on a GPU: an upper bound for that variant"]}


RACT_ML20M = {"users": 136_677, "valid": 10_000, "test": 10_000}


def notebook_04(args) -> dict:
    from coldrec_lib.data import heldout_users
    from coldrec_lib.experiments import ract as experiment
    from coldrec_lib.models.multvae import MultVAE, MultVAEConfig, UserRows, user_batches
    from coldrec_lib.models.ract import (ActorCriticTraining, Critic, CriticPretraining,
                                         CriticValidation)
    settings = experiment.settings_for("ml-20m", "full")
    config = experiment.ract_config(settings)
    sample, _ = shape_sample("ml-20m", args.sample_users_ml20m)
    n_heldout = args.sample_users_ml20m // 10
    split = heldout_users(sample, n_heldout, n_heldout, fold_in=0.8, seed=0)
    train_users = RACT_ML20M["users"] - RACT_ML20M["valid"] - RACT_ML20M["test"]
    rows = UserRows(split.train, split.n_items)
    scale = train_users / len(rows)
    valid = experiment.Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    generator = torch.Generator().manual_seed(0)
    batches = list(user_batches(rows, config.actor.batch_size, generator))
    n_batches = len(batches) * scale
    ease_name = "EASE"
    best = reference_rows("ract", "best epoch")
    ran = {key: reference_rows("ract", key)["RaCT"] for key in ("critic epochs",
                                                                 "stage-3 epochs")}
    patience = config.patience
    costs = []
    # Mult-DAE (I -> 200 -> I) and the actor's stage 1 (Mult-VAE)
    for name, model_config in (("Mult-DAE", MultVAEConfig.dae(batch_size=config.actor.batch_size)),
                               ("Mult-VAE (RaCT stage 1)", config.actor)):
        model = MultVAE(split.n_items, model_config)
        optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr, fused=True)
        flops, ops = fit_cost(model, optimizer, batches, n_batches, k=2)
        vflops, vops = evaluator_cost(valid, model, RACT_ML20M["valid"])
        reference_name = name.split(" ")[0]
        costs.append(Cost(name, flops, ops, vflops, vops,
                          epochs(best.get(reference_name), patience, config.actor_epochs),
                          config.actor_epochs, once_flops=vflops / RACT_ML20M["valid"]
                          * RACT_ML20M["test"], once_ops=vops))
    actor = model
    critic = Critic(config.critic)
    critic_valid = CriticValidation(split.valid, split.n_items, actor.keep_prob, seed=0)
    cflops, cops = count(lambda: critic_valid.measure(actor, critic))
    cflops *= RACT_ML20M["valid"] / len(split.valid)
    cops *= math.ceil(RACT_ML20M["valid"] / critic_valid.batch_size)
    # stage 2: the critic on the frozen actor (epochs run, not best + patience: it keeps its last)
    optimizer = torch.optim.Adam(critic.parameters(), lr=config.critic.lr, fused=True)
    flops, ops = fit_cost(CriticPretraining(actor, critic), optimizer, batches, n_batches, k=2)
    costs.append(Cost("critic (RaCT stage 2)", flops, ops, cflops, cops,
                      min(ran["critic epochs"], config.critic_epochs), config.critic_epochs))
    # stage 3: actor-critic, validated on NDCG@100 and monitored on the critic's users
    optimizer = torch.optim.Adam([{"params": actor.parameters(), "lr": config.finetune_lr},
                                  {"params": critic.parameters(), "lr": config.critic.lr}],
                                 fused=True)
    flops, ops = fit_cost(ActorCriticTraining(actor, critic), optimizer, batches, n_batches, k=2)
    vflops, vops = evaluator_cost(valid, actor, RACT_ML20M["valid"])
    costs.append(Cost("actor-critic (RaCT stage 3)", flops, ops, vflops + cflops, vops + cops,
                      min(ran["stage-3 epochs"], config.finetune_epochs), config.finetune_epochs,
                      once_flops=vflops / RACT_ML20M["valid"] * RACT_ML20M["test"],
                      once_ops=vops))
    # EASE: X^T X and one inverse per l2 of the grid, in float64 on the host (`models.ease`);
    # then scored on the GPU (validation per l2, test once)
    n = split.n_items
    host = 2.0 * train_users * n * n + len(experiment.EASE_L2_GRID) * 2.0 * n ** 3
    eflops = 2.0 * n * n * (len(experiment.EASE_L2_GRID) * RACT_ML20M["valid"]
                            + RACT_ML20M["test"])
    costs.append(Cost(ease_name, 0, 0, once_flops=eflops, once_host_flops=host,
                      note="X^T X (2 U I^2) and an inverse per l2 (2 I^3 each, "
                           f"{len(experiment.EASE_L2_GRID)} l2), float64 on the host CPU; "
                           f"{n}^2 float64 matrices of {8 * n * n / 1e9:.1f} GB each"))
    return {"dataset": "ml-20m", "data": (
        _sample_note("ml-20m", sample, RACT_ML20M["users"] / len(sample.frame["user"].unique()),
                     split.n_items) + f"; training rows x {scale:.1f}"),
        "experiment": "ract", "costs": costs, "assumptions": [
            "held-out users as in the preset: 10,000 validation, 10,000 test, the rest "
            f"({train_users:,}) train",
            "stage 2 and 3 run the reference's epoch counts (critic epochs, stage-3 epochs), "
            "not best + patience",
            "EASE's float64 work runs on the host CPU (the library builds X^T X and inverts it "
            "there) and needs several 20,108^2 float64 matrices (3.2 GB each) in host memory"]}


NOTEBOOKS = {"00_foundations": notebook_00, "01_metatl": notebook_01, "02_melo": notebook_02,
             "03_cmml": notebook_03,
             "04_ract": notebook_04, "05_autoregressive_generation": notebook_05,
             "06_sequential_backbones": notebook_06}


# ---------------------------------------------------------------------- report
def summarise(stem: str, found: dict, efficiency: float, host_gflops: float) -> dict:
    costs: list[Cost] = found["costs"]
    per_epoch = [c.epoch() for c in costs]
    ref = [c.total(c.epochs_reference) for c in costs]
    cap = [c.total(c.epochs_cap) for c in costs]
    host = sum(c.once_host_flops for c in costs)
    host_s = host / (host_gflops * 1e9)

    def minutes(totals):
        flops, ops = sum(t[0] for t in totals), sum(t[1] for t in totals)
        return (t4_seconds(flops, ops, efficiency)["total_s"] + host_s) / 60, flops, ops

    ref_min, ref_flops, ref_ops = minutes(ref)
    cap_min, cap_flops, cap_ops = minutes(cap)
    trained = [c for c in costs if c.epochs_cap]
    return {
        "dataset": found["dataset"], "data": found["data"],
        "models": [c.model for c in costs],
        "gflop_per_epoch": sum(f for f, _ in per_epoch) / 1e9,
        "ops_per_epoch": sum(o for _, o in per_epoch),
        "epochs_reference": {c.model: round(c.epochs_reference, 1) for c in trained},
        "epochs_cap": {c.model: c.epochs_cap for c in trained},
        "gflop_reference": ref_flops / 1e9, "ops_reference": ref_ops,
        "gflop_cap": cap_flops / 1e9, "ops_cap": cap_ops,
        "t4_compute_minutes_reference": t4_seconds(ref_flops, 0, efficiency)["total_s"] / 60,
        "t4_launch_minutes_reference": t4_seconds(0, ref_ops, efficiency)["total_s"] / 60,
        "host_gflop": host / 1e9, "host_minutes": host_s / 60,
        "t4_minutes_reference": ref_min, "t4_minutes_cap": cap_min,
        "cpu_minutes_per_seed_ml100k": cpu_minutes(found["experiment"]),
        "per_model": {c.model: {"gflop_per_epoch": c.epoch()[0] / 1e9,
                                "ops_per_epoch": c.epoch()[1],
                                "train_gflop_per_epoch": c.train_flops / 1e9,
                                "train_ops_per_epoch": c.train_ops,
                                "valid_gflop": c.valid_flops / 1e9, "valid_ops": c.valid_ops,
                                "valid_every": c.valid_every,
                                "gflop_once": c.once_flops / 1e9,
                                "host_gflop_once": c.once_host_flops / 1e9,
                                "ops_once": c.once_ops,
                                "t4_minutes_reference": t4_minutes(*c.total(c.epochs_reference),
                                                                   efficiency),
                                "t4_minutes_cap": t4_minutes(*c.total(c.epochs_cap), efficiency),
                                **({"note": c.note} if c.note else {})} for c in costs},
        "assumptions": found["assumptions"], "estimate": True,
    }


def _minutes(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*", default=list(NOTEBOOKS))
    parser.add_argument("--data-path", default=str(ML100K))
    parser.add_argument("--efficiency", type=float, default=EFFICIENCY)
    parser.add_argument("--sample-users", type=int, default=1000)
    parser.add_argument("--sample-users-electronics", type=int, default=10_000)
    parser.add_argument("--sample-users-ml20m", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gpu_like_optimizers()
    # host work in float64 (EASE's Gram matrix and inverses, always on the CPU) is costed at
    # this rate; a shared core reads low on single calls, hence the best of two sizes
    host_gflops = matmul_peak_gflops(sizes=(256, 512), dtype=torch.float64)
    assumptions = [
        f"T4 FP32 peak {T4_FP32_PEAK / 1e12:.1f} TFLOP/s at efficiency {args.efficiency}; "
        f"{LAUNCH_S * 1e6:.0f} us per aten operation",
        "FLOPs: matrix products, convolutions and attention only (torch.utils.flop_counter)",
        "operations: aten calls on the CPU (views count, fused CUDA kernels are not modelled)",
        "optimizers counted with foreach (their CUDA default)",
        "epochs 'reference' = ML-100K reference best epoch (mean over seeds) + this preset's "
        "patience, at most the cap; 'cap' = the preset's cap",
        "no data loading, checkpoint writing or host-device copies counted",
        f"float64 work the library runs on the host CPU (EASE) at this machine's float64 matmul "
        f"rate, {host_gflops:.1f} GFLOP/s on {torch.get_num_threads()} thread(s)"]
    print("ESTIMATES, not measurements. " + "; ".join(assumptions), flush=True)
    results = {}
    for stem in args.notebooks:
        start = time.process_time()
        found = NOTEBOOKS[stem](args)
        results[stem] = summary = summarise(stem, found, args.efficiency, host_gflops)
        summary["counting_cpu_s"] = round(time.process_time() - start, 1)
        print(f"\n{stem} on {summary['dataset']} ({summary['data']}); counted in "
              f"{summary['counting_cpu_s']} CPU-s", flush=True)
        for note in summary["assumptions"]:
            print(f"  assumption: {note}")
        print(f"  {'model':38s} {'GFLOP/epoch':>12s} {'ops/epoch':>10s} {'epochs ref':>10s} "
              f"{'cap':>5s} {'T4 min ref':>10s} {'T4 min cap':>10s}")
        for model, row in summary["per_model"].items():
            print(f"  {model:38s} {row['gflop_per_epoch']:12.1f} {row['ops_per_epoch']:10,.0f} "
                  f"{summary['epochs_reference'].get(model, 0):10.1f} "
                  f"{summary['epochs_cap'].get(model, 0):5d} "
                  f"{row['t4_minutes_reference']:10.1f} {row['t4_minutes_cap']:10.1f}")
        print(f"  T4 estimate: {_minutes(summary['t4_minutes_reference'])} min at the reference's "
              f"epochs ({_minutes(summary['t4_compute_minutes_reference'])} compute + "
              f"{_minutes(summary['t4_launch_minutes_reference'])} launch"
              + (f" + {summary['host_minutes']:.0f} host-CPU float64 at {host_gflops:.0f} "
                 f"GFLOP/s" if summary["host_minutes"] else "")
              + f"), {_minutes(summary['t4_minutes_cap'])} min at the caps; measured CPU (1 "
              f"thread): {_minutes(summary['cpu_minutes_per_seed_ml100k'])} min per seed of the "
              f"ML-100K "
              f"reference", flush=True)
    table = " | ".join(f"{stem} {r['dataset']}: T4 ~{_minutes(r['t4_minutes_reference'])}-"
                       f"{_minutes(r['t4_minutes_cap'])} min (estimate), CPU "
                       f"{_minutes(r['cpu_minutes_per_seed_ml100k'])} min/seed on ML-100K"
                       for stem, r in results.items())
    print("\n" + table)
    out = {"benchmark": "full_run_estimate", "estimate": True, "assumptions": assumptions,
           "host_fp64_gflops": host_gflops,
           "efficiency": args.efficiency, "t4_fp32_peak": T4_FP32_PEAK, "launch_s": LAUNCH_S,
           "notebooks": results}
    line = json.dumps(out)
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(line)


if __name__ == "__main__":
    main()
