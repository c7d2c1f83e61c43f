"""CMML / s2Meta benchmark: scenarios per second, batched over scenarios against one scenario at
a time (as the original code trains and evaluates), measured in this one run, on the smoke
preset's synthetic scenarios and on the real ML-100K genre x time scenarios at the full preset's
sizes (backbone 64-64-64, d = 32, support 64 + 128 queries, evaluation support <= 512, every
evaluated user ranking all candidates of the scenario).

* training: the same training scenarios, either the preset's ``scenarios_per_batch`` per
  optimiser step (coldrec) or one scenario per step (the originals: "one scenario per step");
* evaluation: the test scenarios, ``ScenarioEvaluator`` with its default batch against one
  scenario at a time (the same metrics either way: checked).

Each path is timed ``--repeats`` times, the paths interleaved, best *CPU* time of this process
kept (``time.process_time``, one thread: the core is shared, and CPU time does not count the
slices other processes take). FLOPs of one pass of each path are counted by ``torch.utils.flop_counter`` (matrix
products only: elementwise work such as FiLM, ReLU or s2Meta's coordinate-wise LSTM gates is not
counted); achieved GFLOP/s = *useful* FLOPs (the one-at-a-time count: no padding) / time, as a
fraction of a square fp32 ``torch.matmul``'s GFLOP/s on this machine measured in the same run.
``ceiling`` = peak / one-at-a-time GFLOP/s: the most any batching could gain if it ran every
useful FLOP at matmul peak and did nothing else. Ends with one line of JSON; ``speedup`` is the
smallest batched / one-at-a-time ratio over models, phases and datasets (target >= 5).

    python benchmarks/cmml.py --data-path ../shared/data/ml-100k   # a few minutes, one core
    python benchmarks/cmml.py --quick                              # a smoke run of the script
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from coldrec_lib.evaluation import ScenarioEvaluator
from coldrec_lib.experiments import cmml as experiment
from coldrec_lib.models.cmml import CMML, CMMLConfig
from coldrec_lib.models.s2meta import S2Meta, S2MetaConfig

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
SETTINGS = {"smoke": ("synthetic", "smoke"), "ml-100k": ("ml-100k", "full")}


def train_pass(make, split, config, n_scenarios: int, per_step: int):
    """A function that trains a fresh model on ``n_scenarios`` pre-sampled training scenarios,
    ``per_step`` per optimiser step."""
    generator = torch.Generator().manual_seed(0)
    batches = [split.train.sample(per_step, config["support"], config["query"],
                                  config["n_negatives"], generator)
               for _ in range(n_scenarios // per_step)]

    def run():
        torch.manual_seed(0)
        model = make().train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
        for batch in batches:
            loss = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return run


def eval_pass(model, eval_set, per_batch: int):
    evaluator = ScenarioEvaluator(eval_set, scenarios_per_batch=per_batch)
    return lambda: evaluator.evaluate(model).metrics


def best_times(passes: dict, repeats: int) -> dict:
    """Best CPU time of every pass over ``repeats`` rounds (the passes interleaved)."""
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(repeats):
        for name, run in passes.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    return best


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of a square fp32 ``torch.matmul`` (best CPU time of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_times({"matmul": lambda: torch.matmul(a, b)}, repeats)["matmul"] / 1e9


class _NoModuleTracking:
    """Stands in for `FlopCounterMode`'s module tracker, whose hooks break
    ``torch.autograd.grad`` on leaf tensors (s2Meta's inner loop under ``no_grad``)."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def counted_flops(run) -> float:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        run()
    return float(counter.get_total_flops())


def bench_dataset(label: str, data_path, args, peak: float, figures: dict) -> None:
    dataset, preset = SETTINGS[label]
    config = experiment.preset_settings(experiment.PRESETS, preset)
    split = experiment.make_split(dataset, config, data_path, seed=0)
    embeddings = experiment.pretrain_embeddings(split.train, config["dim"], 5)
    eval_set = split.test.eval_set(config["max_support"], config["n_negatives"], seed=0)
    batch = config["scenarios_per_batch"]
    n_train = batch * (1 if args.quick else args.train_batches)
    shared = {"hidden": config["hidden"], "lr": config["lr"]}
    models = {"CMML": lambda: CMML(embeddings, CMMLConfig(**shared)),
              "s2Meta": lambda: S2Meta(embeddings, S2MetaConfig(**shared, **config["s2meta"]))}
    print(f"\n{label} ({preset} preset): {split!r}; hidden {config['hidden']}; {n_train} training "
          f"scenarios ({batch} per step vs 1), {len(eval_set)} test scenarios "
          f"({ScenarioEvaluator(eval_set).scenarios_per_batch} per batch vs 1)")
    for name, make in models.items():
        torch.manual_seed(0)
        model = make().eval()
        passes = {("train", "batched"): train_pass(make, split, config, n_train, batch),
                  ("train", "one-at-a-time"): train_pass(make, split, config, n_train, 1),
                  ("eval", "batched"): eval_pass(model, eval_set, ScenarioEvaluator(
                      eval_set).scenarios_per_batch),
                  ("eval", "one-at-a-time"): eval_pass(model, eval_set, 1)}
        metrics = {mode: passes[("eval", mode)]() for mode in ("batched", "one-at-a-time")}
        assert all(abs(metrics["batched"][k] - metrics["one-at-a-time"][k]) < 1e-4
                   for k in metrics["batched"]), f"{name}: batched and one-at-a-time metrics differ"
        flops = {key: counted_flops(run) for key, run in passes.items()}
        seconds = best_times(passes, 1 if args.quick else args.repeats)
        for phase, n in (("train", n_train), ("eval", len(eval_set))):
            key = f"{label}_{name}_{phase}"
            useful = flops[(phase, "one-at-a-time")]
            rate = {mode: n / seconds[(phase, mode)] for mode in ("batched", "one-at-a-time")}
            gflops = {mode: useful / seconds[(phase, mode)] / 1e9 for mode in rate}
            figures.update({
                f"{key}_batched_scenarios_per_s": rate["batched"],
                f"{key}_one-at-a-time_scenarios_per_s": rate["one-at-a-time"],
                f"{key}_speedup": rate["batched"] / rate["one-at-a-time"],
                f"{key}_mflop_per_scenario": useful / n / 1e6,
                f"{key}_padding_flops": flops[(phase, "batched")] / useful,
                f"{key}_batched_fraction_of_peak": gflops["batched"] / peak,
                f"{key}_one-at-a-time_fraction_of_peak": gflops["one-at-a-time"] / peak,
                f"{key}_ceiling": peak / gflops["one-at-a-time"]})
            print(f"  {name:6s} {phase:5s}: batched {rate['batched']:8.1f} scenarios/s "
                  f"({gflops['batched']:5.2f} GFLOP/s, {gflops['batched'] / peak:6.1%} of peak) | "
                  f"one at a time {rate['one-at-a-time']:8.1f} ({gflops['one-at-a-time']:5.2f} "
                  f"GFLOP/s, {gflops['one-at-a-time'] / peak:6.1%}) -> "
                  f"{rate['batched'] / rate['one-at-a-time']:5.2f}x; ceiling "
                  f"{peak / gflops['one-at-a-time']:5.1f}x; {useful / n / 1e6:7.1f} MFLOP per "
                  f"scenario, batched path executes {flops[(phase, 'batched')] / useful:4.2f}x "
                  "of it (padding)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--data-path", default=str(ML100K),
                        help="folder with ML-100K's u.data and item genres")
    parser.add_argument("--train-batches", type=int, default=4,
                        help="training scenarios = this many batches of the preset's size")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    peak = matmul_peak_gflops()
    figures = {"benchmark": "cmml", "device": "cpu, 1 thread", "peak_gflops": peak}
    print(f"torch.matmul peak (1024 x 1024, fp32, 1 thread): {peak:.1f} GFLOP/s")
    for label in args.datasets:
        if label == "ml-100k" and not (Path(args.data_path) / "u.data").exists():
            print(f"\nml-100k: skipped ({args.data_path} holds no u.data)")
            continue
        bench_dataset(label, args.data_path if label == "ml-100k" else None, args, peak, figures)
    figures["speedup"] = min(v for k, v in figures.items() if k.endswith("_speedup"))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
