"""Generation benchmark (issue 12): users per second for 30-sequence sampling over 10 steps,
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
# The authors' code on ML-100K, one thread (issue 12): users/s for 30 sequences x 10 steps
ANCHORS = {"generate() user by user": 25.0, "generate() in batches of 16": 16.3,
           "generate() in one call, all users": 7.1, "one call, users sorted by length": 25.9,
           "their RRA end to end": 16.7}
TARGET_SPEEDUP, TARGET_RRA = 5.0, 125.0


def sample_only(model: GPT2Rec, eval_set: EvalSet, batch_size: int, seed: int = 0) -> float:
    """Seconds for coldrec's batched 30 x 10 sampling over ``eval_set`` (no aggregation)."""
    generator = torch.Generator().manual_seed(seed)

    def pick(logits):
        probs, items = warp(logits, STRATEGY.temperature, STRATEGY.top_k)
        return items.gather(1, torch.multinomial(probs, 1, generator=generator)).squeeze(1)

    start = time.perf_counter()
    with torch.no_grad():
        for rows in torch.arange(len(eval_set)).split(batch_size):
            decode(model, eval_set.batch(rows), HORIZON, pick, STRATEGY.n_sequences)
    return time.perf_counter() - start


def hf_one_by_one(model: GPT2Rec, eval_set: EvalSet, strategy, n_users: int) -> tuple[float, list]:
    """Seconds and outputs of ``generate()`` called for each of the first ``n_users`` users."""
    torch.manual_seed(0)
    outputs, start = [], time.perf_counter()
    for row in range(n_users):
        outputs.append(hf_generate(model, eval_set.batch(torch.tensor([row])), strategy, HORIZON))
    return time.perf_counter() - start, outputs


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

    hf_seconds, _ = hf_one_by_one(model, test, STRATEGY, n_hf)
    ours_seconds = sample_only(model, test, args.batch_size)
    start = time.perf_counter()
    generate_lists(model, STRATEGY, test, HORIZON, batch_size=args.batch_size)
    rra_seconds = time.perf_counter() - start
    hf_rate, ours_rate, rra_rate = n_hf / hf_seconds, len(test) / ours_seconds, \
        len(test) / rra_seconds
    speedup = ours_rate / hf_rate

    with torch.no_grad():
        ours_greedy = Greedy().rank(model, test.batch(torch.arange(n_hf)), HORIZON)
    _, hf_greedy = hf_one_by_one(model, test, Greedy(), n_hf)
    identical = all(torch.equal(hf[0], ours) for hf, ours in zip(hf_greedy, ours_greedy))

    print(f"\n30 sequences x {HORIZON} steps (T={STRATEGY.temperature}, top-{STRATEGY.top_k}), "
          f"users/s measured in this run:")
    print(f"  generate() user by user ({n_hf} users)     {hf_rate:8.1f}")
    print(f"  coldrec batched ({args.batch_size} users x 30 seq.)  {ours_rate:8.1f}   "
          f"speedup {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x)")
    print(f"  coldrec RRA end to end                {rra_rate:8.1f}   "
          f"(target >= {TARGET_RRA:.0f} users/s)")
    print(f"greedy decoding, {n_hf} users: coldrec and generate() identical: {identical}")
    print("\nthe authors' code on ML-100K, one thread (issue 12; not measured here), users/s:")
    for name, value in ANCHORS.items():
        print(f"  {name:36s} {value:6.1f}")
    if not identical:
        raise SystemExit("greedy decoding differs between coldrec and generate()")
    print(json.dumps({"benchmark": "generation", "dataset": data.name, "speedup": round(speedup, 2),
                      "users_per_s": round(ours_rate, 1), "generate_users_per_s": round(hf_rate, 1),
                      "rra_users_per_s": round(rra_rate, 1), "greedy_identical": identical,
                      "target_speedup": TARGET_SPEEDUP, "target_rra_users_per_s": TARGET_RRA,
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
