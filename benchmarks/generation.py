"""Generation benchmark: users per second for 30-sequence sampling over 10 steps,
coldrec's batched decoding (one prompt encoding per user, its key/value cache repeated for the 30
sequences, many users at once) against Hugging Face ``generate()`` called user by user, as the
authors' code does; measured in this one run on the same model and users.

* Data: MovieLens 100K with the paper's filters (items >= 5 users, users >= 20 items) and the
  last-10 split when ``--data-path`` holds it (default ``../shared/data/ml-100k``), else the
  synthetic data. Test users only (the authors' anchor: 471 users).
* Model: the authors' GPT-2 config (n_embd 64, 2 layers, 1 head, context 128), untrained: the
  cost of decoding does not depend on the weights.
* Greedy decoding through both paths must give identical items (deterministic, so "under a fixed
  seed" holds trivially); the script fails otherwise.
* RRA end to end: sampling + reciprocal-rank aggregation over every test user (target >= 125
  users/s, 5x the authors' 25.0 users/s).

Prints a report and ends with one line of JSON.

    python benchmarks/generation.py            # about a minute on a 2-core CPU
    python benchmarks/generation.py --quick    # a smoke run of the script itself
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from coldrec_lib.data.splits import EvalSet
from coldrec_lib.experiments.generation import HORIZON, first_targets, load_split, settings_for
from coldrec_lib.generation import Greedy, Sampling, decode, generate_lists, hf_generate, warp
from coldrec_lib.models.gpt2rec import GPT2Rec, GPT2RecConfig

ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
STRATEGY = Sampling(temperature=0.6, top_k=20, n_sequences=30, aggregation="rra")
# The authors' code (dalibra/autoregressive-generation-strategies-longterm-seqrec) on ML-100K,
# one thread: users/s for 30 sequences x 10 steps
ANCHORS = {"generate() user by user": 25.0, "generate() in batches of 16": 16.3,
           "generate() in one call, all users": 7.1, "one call, users sorted by length": 25.9,
           "their RRA end to end": 16.7}
TARGET_SPEEDUP, TARGET_RRA = 5.0, 125.0


class Clock:
    """Wall and CPU seconds of a block: on a CPU shared with other jobs, users per CPU-second
    (one torch thread) is the figure that does not depend on the neighbours."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def sample_only(model: GPT2Rec, eval_set: EvalSet, batch_size: int, seed: int = 0) -> Clock:
    """Time of coldrec's batched 30 x 10 sampling over ``eval_set`` (no aggregation)."""
    generator = torch.Generator().manual_seed(seed)

    def pick(logits):
        probs, items = warp(logits, STRATEGY.temperature, STRATEGY.top_k)
        return items.gather(1, torch.multinomial(probs, 1, generator=generator)).squeeze(1)

    with torch.no_grad(), Clock() as clock:
        for rows in torch.arange(len(eval_set)).split(batch_size):
            decode(model, eval_set.batch(rows), HORIZON, pick, STRATEGY.n_sequences)
    return clock


def hf_one_by_one(model: GPT2Rec, eval_set: EvalSet, strategy, n_users: int) -> tuple[Clock, list]:
    """Time and outputs of ``generate()`` called for each of the first ``n_users`` users."""
    torch.manual_seed(0)
    outputs = []
    with Clock() as clock:
        for row in range(n_users):
            outputs.append(hf_generate(model, eval_set.batch(torch.tensor([row])), strategy,
                                       HORIZON))
    return clock, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-path", default=str(ML100K))
    parser.add_argument("--hf-users", type=int, default=100,
                        help="users timed through generate() one by one")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real = (Path(args.data_path) / "u.data").exists() and not args.quick
    dataset = "ml-100k" if real else "synthetic"
    preset = "full" if real else "smoke"
    data, split = load_split(dataset, settings_for(dataset, preset), 0,
                             args.data_path if real else None)
    test = first_targets(split.test, HORIZON)
    torch.manual_seed(0)
    context = 128 if real else 48
    model = GPT2Rec(split.n_items, GPT2RecConfig(context=context, dim=64, n_layers=2,
                                                 n_heads=1)).eval()
    lengths = test.history.lengths.float()
    n_hf = min(args.hf_users if not args.quick else 10, len(test))
    print(f"data: {data.name} after the paper's filters: {data.n_users:,} users, "
          f"{split.n_items:,} items; {len(test)} test users, history mean "
          f"{lengths.mean():.0f} (prompt <= {context - HORIZON + 1} items); "
          f"torch {torch.__version__}, {args.threads} thread(s)")

    hf, _ = hf_one_by_one(model, test, STRATEGY, n_hf)
    ours = sample_only(model, test, args.batch_size)
    with Clock() as rra:
        generate_lists(model, STRATEGY, test, HORIZON, batch_size=args.batch_size)
    rates = {name: (n / clock.wall, n / clock.cpu) for name, clock, n in
             (("hf", hf, n_hf), ("ours", ours, len(test)), ("rra", rra, len(test)))}
    speedup = rates["ours"][1] / rates["hf"][1]
    wall_speedup = rates["ours"][0] / rates["hf"][0]

    with torch.no_grad():
        ours_greedy = Greedy().rank(model, test.batch(torch.arange(n_hf)), HORIZON)
    _, hf_greedy = hf_one_by_one(model, test, Greedy(), n_hf)
    identical = all(torch.equal(hf[0], ours) for hf, ours in zip(hf_greedy, ours_greedy))

    print(f"\n30 sequences x {HORIZON} steps (T={STRATEGY.temperature}, top-{STRATEGY.top_k}), "
          f"users per wall second | per CPU second, measured in this run:")
    labels = {"hf": f"generate() user by user ({n_hf} users)",
              "ours": f"coldrec batched ({args.batch_size} users x 30 seq.)",
              "rra": "coldrec RRA end to end"}
    for key, label in labels.items():
        print(f"  {label:40s} {rates[key][0]:8.1f} | {rates[key][1]:8.1f}")
    print(f"speedup {speedup:.1f}x per CPU second ({wall_speedup:.1f}x wall; target >= "
          f"{TARGET_SPEEDUP:.0f}x); RRA {rates['rra'][1]:.1f} users per CPU second "
          f"(target >= {TARGET_RRA:.0f})")
    print(f"greedy decoding, {n_hf} users: coldrec and generate() identical: {identical}")
    print("\nthe authors' code on ML-100K, one thread (not measured here), users/s:")
    for name, value in ANCHORS.items():
        print(f"  {name:36s} {value:6.1f}")
    if not identical:
        raise SystemExit("greedy decoding differs between coldrec and generate()")
    print(json.dumps({"benchmark": "generation", "dataset": data.name, "speedup": round(speedup, 2),
                      "wall_speedup": round(wall_speedup, 2),
                      "users_per_cpu_s": round(rates["ours"][1], 1),
                      "generate_users_per_cpu_s": round(rates["hf"][1], 1),
                      "rra_users_per_cpu_s": round(rates["rra"][1], 1),
                      "rra_users_per_wall_s": round(rates["rra"][0], 1),
                      "greedy_identical": identical, "target_speedup": TARGET_SPEEDUP,
                      "target_rra_users_per_s": TARGET_RRA, "threads": args.threads}))


if __name__ == "__main__":
    main()
