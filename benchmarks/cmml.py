"""CMML / s2Meta benchmark: scenarios per second, batched over scenarios against one scenario at
a time (as the original code trains and evaluates), measured in this one run.

* training: the same number of training scenarios, either ``--batch`` scenarios per optimiser
  step (coldrec) or one scenario per step (the originals: "one scenario per step");
* evaluation: the test scenarios of the smoke preset's synthetic data, ``--batch`` scenarios
  adapted and scored at once against one at a time (the same metrics either way: checked).

Prints a report and ends with one line of JSON; ``speedup`` is the smallest of the four ratios
(target >= 5).

    python benchmarks/cmml.py           # about a minute on a 2-core CPU
    python benchmarks/cmml.py --quick   # a smoke run of the script itself
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from coldrec_lib.evaluation import ScenarioEvaluator
from coldrec_lib.experiments import cmml as experiment
from coldrec_lib.models.cmml import CMML, CMMLConfig
from coldrec_lib.models.s2meta import S2Meta, S2MetaConfig


def train_rate(model, split, config, n_scenarios: int, per_step: int) -> float:
    """Training scenarios per second with ``per_step`` scenarios per optimiser step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [split.train.sample(per_step, config["support"], config["query"],
                                  config["n_negatives"], generator)
               for _ in range(n_scenarios // per_step)]
    model.train()
    start = time.perf_counter()
    for batch in batches:
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return n_scenarios / (time.perf_counter() - start)


def eval_rate(model, eval_set, per_batch: int) -> tuple[float, dict]:
    evaluator = ScenarioEvaluator(eval_set, scenarios_per_batch=per_batch)
    start = time.perf_counter()
    result = evaluator.evaluate(model)
    return len(eval_set) / (time.perf_counter() - start), result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = experiment.preset_settings(experiment.PRESETS, "smoke")
    split = experiment.make_split("synthetic", config, seed=0)
    embeddings = experiment.pretrain_embeddings(split.train, config["dim"], 5)
    eval_set = split.test.eval_set(config["max_support"], config["n_negatives"], seed=0)
    n_train = args.batch * (1 if args.quick else 4)
    shared = {"hidden": (64, 64, 64)}
    models = {"CMML": lambda: CMML(embeddings, CMMLConfig(**shared)),
              "s2Meta": lambda: S2Meta(embeddings, S2MetaConfig(**shared, min_steps=4,
                                                                 max_steps=8))}
    figures = {"benchmark": "cmml", "batch": args.batch, "device": "cpu, 1 thread"}
    print(f"{split!r}; {n_train} training scenarios, {len(eval_set)} test scenarios; "
          f"batch {args.batch} scenarios vs 1")
    for name, make in models.items():
        for mode, per_step in (("batched", args.batch), ("one-at-a-time", 1)):
            torch.manual_seed(0)
            figures[f"{name}_train_{mode}_scenarios_per_s"] = train_rate(
                make(), split, config, n_train, per_step)
        torch.manual_seed(0)
        model = make().eval()
        batched, metrics = eval_rate(model, eval_set, min(args.batch, 16))
        single, single_metrics = eval_rate(model, eval_set, 1)
        assert all(abs(metrics[k] - single_metrics[k]) < 1e-4 for k in metrics), name
        figures[f"{name}_eval_batched_scenarios_per_s"] = batched
        figures[f"{name}_eval_one-at-a-time_scenarios_per_s"] = single
        for what in ("train", "eval"):
            ratio = (figures[f"{name}_{what}_batched_scenarios_per_s"]
                     / figures[f"{name}_{what}_one-at-a-time_scenarios_per_s"])
            figures[f"{name}_{what}_speedup"] = ratio
            print(f"{name:7s} {what:5s}: batched {figures[f'{name}_{what}_batched_scenarios_per_s']:8.1f}"
                  f" scenarios/s, one at a time "
                  f"{figures[f'{name}_{what}_one-at-a-time_scenarios_per_s']:8.1f}  -> {ratio:5.1f}x")
    figures["speedup"] = min(v for k, v in figures.items() if k.endswith("_speedup"))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
