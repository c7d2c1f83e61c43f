"""MetaTL benchmark: coldrec's batched MetaTL against a per-task reference loop, and evaluation
speed.

1. Training throughput (tasks/s), measured in this one run on the same data (synthetic cold-start
   split), the same batch size (1,024 tasks) and the same initial weights:
   * reference: the paper's algorithm written straightforwardly, as the original code does it:
     tasks sampled in Python one at a time (random user, random contiguous window, rejection-
     sampled negatives), then each task's inner step and query loss computed on its own; one
     optimizer step per batch;
   * coldrec: `TaskSampler` + `task_batches` + `MetaTL.loss`, the whole batch at once.
   Both are trained for the same number of tasks and evaluated on the same test users under the
   same protocols: the metrics should agree within noise (two standard errors of the per-user
   difference).
2. coldrec throughput with ``torch.set_num_threads(1)`` vs 2.
3. Evaluation of 10,000 users x 101 candidates (inner step included), whole set in one batch.

Prints a human-readable report and ends with one line of JSON.

    python benchmarks/metatl.py            # about a minute on a 2-core CPU
    python benchmarks/metatl.py --quick    # a smoke run of the script itself
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time

import torch
import torch.nn.functional as F

from coldrec_lib.data import Sequences, TaskSampler, make_synthetic
from coldrec_lib.data.splits import EvalSet
from coldrec_lib.evaluation import Evaluator
from coldrec_lib.experiments.metatl import (PROTOCOLS, make_evaluators, make_split,
                                            paired_difference)
from coldrec_lib.models.metatl import MetaTL, MetaTLConfig, task_batches

K = 3
BATCH_SIZE = 1024


# ---------------------------------------------------------------------- the reference loop
def python_user_lists(sequences: Sequences) -> dict[int, list[int]]:
    items = sequences.items.tolist()
    offsets = sequences.offsets.tolist()
    return {u: items[offsets[u]:offsets[u + 1]] for u in range(sequences.n_users)
            if offsets[u + 1] > offsets[u]}


def sample_task_python(user_items: dict[int, list[int]], eligible: list[int], n_items: int, k: int):
    """One task as the original sampler builds it, minus its bugs: a random user with at least
    K + 1 items, a random contiguous window, one rejection-sampled negative per transition."""
    user = random.choice(eligible)
    sequence = user_items[user]
    start = random.randrange(len(sequence) - k)
    window = sequence[start:start + k + 1]
    seen = set(window)
    negatives = []
    for _ in range(k):
        negative = random.randint(1, n_items)
        while negative in seen:
            negative = random.randint(1, n_items)
        negatives.append(negative)
    return window, negatives


def reference_task_loss(model: MetaTL, window: list[int], negatives: list[int]) -> torch.Tensor:
    """The paper's algorithm for one task: relation from the support transitions, one inner step
    on the support margin loss (first order), margin loss of the query."""
    items = model.items(torch.tensor(window))
    negative = model.items(torch.tensor(negatives))
    heads, tails = items[:-2], items[1:-1]
    per_transition = model.relation.output(model.relation.hidden(torch.cat([heads, tails], -1)))
    relation = per_transition.mean(0)  # the paper's order: MLP per transition, then the mean
    margin, beta = model.config.margin, model.config.beta
    distance = lambda h, r, t: ((h + r - t) ** 2).sum(-1).add(1e-12).sqrt()  # noqa: E731
    support_loss = F.relu(margin + distance(heads, relation, tails)
                          - distance(heads, relation, negative[:-1])).mean()
    (gradient,) = torch.autograd.grad(support_loss, relation)
    adapted = relation - beta * gradient
    return F.relu(margin + distance(items[-2], adapted, items[-1])
                  - distance(items[-2], adapted, negative[-1]))


def train_reference(model: MetaTL, sequences: Sequences, n_items: int, n_batches: int,
                    seed: int) -> float:
    """Returns seconds spent. One optimizer step per batch of `BATCH_SIZE` tasks."""
    random.seed(seed)
    user_items = python_user_lists(sequences)
    eligible = [u for u, items in user_items.items() if len(items) >= K + 1]
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    model.train()
    start = time.perf_counter()
    for _ in range(n_batches):
        optimizer.zero_grad()
        for _ in range(BATCH_SIZE):
            window, negatives = sample_task_python(user_items, eligible, n_items, K)
            (reference_task_loss(model, window, negatives) / BATCH_SIZE).backward()
        optimizer.step()
    return time.perf_counter() - start


# ---------------------------------------------------------------------- coldrec
def train_coldrec(model: MetaTL, sequences: Sequences, n_items: int, n_batches: int,
                  seed: int) -> float:
    sampler = TaskSampler(sequences, k=K)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    model.train()
    start = time.perf_counter()
    for batch in task_batches(sampler, n_items, BATCH_SIZE, n_batches, generator):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def compare(evaluators, models: dict[str, MetaTL]) -> dict:
    """MRR of each model under each protocol, and whether they agree within 2 standard errors."""
    out = {}
    for protocol_name, evaluator in evaluators.items():
        results = {name: evaluator.evaluate(model, name) for name, model in models.items()}
        difference, noise = paired_difference(*results.values(), "MRR")
        out[protocol_name] = {**{name: round(r.metrics["MRR"], 4) for name, r in results.items()},
                              "difference": round(difference, 4),
                              "two_standard_errors": round(noise, 4),
                              "within_noise": abs(difference) <= noise}
    return out


def evaluation_time(model: MetaTL, n_items: int, n_users: int, repeats: int = 3) -> dict:
    """Seconds to score ``n_users`` new users (K items each) against 101 candidates."""
    generator = torch.Generator().manual_seed(0)
    history = torch.stack([torch.randperm(n_items, generator=generator)[:K + 1] + 1
                           for _ in range(n_users)])
    offsets = lambda width: torch.arange(n_users + 1) * width  # noqa: E731
    eval_set = EvalSet(torch.arange(n_users), Sequences(history[:, :K].flatten(), offsets(K)),
                       Sequences(history[:, K:].flatten(), offsets(1)), "benchmark users")
    start = time.perf_counter()
    evaluator = Evaluator(eval_set, PROTOCOLS["sampled-100"], n_items, batch_size=n_users)
    negatives_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        evaluator.evaluate(model)
        times.append(time.perf_counter() - start)
    return {"eval_s": round(statistics.median(times), 4), "eval_users": n_users,
            "eval_candidates": PROTOCOLS["sampled-100"].n_negatives + 1,
            "negative_drawing_s": round(negatives_s, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40,
                        help="training batches of 1,024 tasks for each implementation")
    parser.add_argument("--quick", action="store_true", help="tiny run that checks the script")
    args = parser.parse_args()
    n_batches = 2 if args.quick else args.batches
    torch.set_num_threads(1)

    data = make_synthetic(n_users=3000, n_items=1500, seed=0)
    split = make_split(data, new_user_fraction=0.3, valid_fraction=0.3, seed=0)
    sequences = split.train_sequences()
    torch.manual_seed(0)
    initial = MetaTL(split.n_items, MetaTLConfig(batch_size=BATCH_SIZE))
    reference, coldrec = copy.deepcopy(initial), copy.deepcopy(initial)
    print(f"data: {split!r}; K={K}, {n_batches} batches of {BATCH_SIZE} tasks each")

    torch.manual_seed(1)
    reference_s = train_reference(reference, sequences, split.n_items, n_batches, seed=1)
    torch.manual_seed(1)
    coldrec_s = train_coldrec(coldrec, sequences, split.n_items, n_batches, seed=1)
    n_tasks = n_batches * BATCH_SIZE
    tasks_per_s, reference_tasks_per_s = n_tasks / coldrec_s, n_tasks / reference_s
    print(f"reference per-task loop: {reference_tasks_per_s:9.1f} tasks/s ({reference_s:.1f} s)")
    print(f"coldrec batched MetaTL:  {tasks_per_s:9.1f} tasks/s ({coldrec_s:.1f} s) "
          f"-> speedup {tasks_per_s / reference_tasks_per_s:.1f}x (1 CPU thread each)")

    threads = {}
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        model = copy.deepcopy(initial)
        n = max(2, n_batches // 3)
        threads[n_threads] = round(n * BATCH_SIZE / train_coldrec(model, sequences, split.n_items,
                                                                  n, seed=2), 1)
        print(f"coldrec with torch.set_num_threads({n_threads}): {threads[n_threads]:9.1f} tasks/s")
    torch.set_num_threads(1)

    agreement = compare(make_evaluators(split, K, "test"),
                        {"reference": reference, "coldrec": coldrec})
    for protocol_name, row in agreement.items():
        print(f"test MRR [{protocol_name}]: {row}")
    evaluation = evaluation_time(coldrec, split.n_items, 1000 if args.quick else 10_000)
    print(f"evaluation of {evaluation['eval_users']:,} users x {evaluation['eval_candidates']} "
          f"candidates: {evaluation['eval_s']:.3f} s (negatives drawn once beforehand in "
          f"{evaluation['negative_drawing_s']:.3f} s)")
    print(json.dumps({
        "benchmark": "metatl", "speedup": round(tasks_per_s / reference_tasks_per_s, 1),
        "tasks_per_s": round(tasks_per_s, 1),
        "reference_tasks_per_s": round(reference_tasks_per_s, 1),
        "tasks_per_s_1_thread": threads[1], "tasks_per_s_2_threads": threads[2],
        "batch_size": BATCH_SIZE, "k": K, "n_tasks": n_tasks,
        "test_mrr": {p: {m: row[m] for m in ("reference", "coldrec")}
                     for p, row in agreement.items()},
        "metrics_within_noise": all(row["within_noise"] for row in agreement.values()),
        **evaluation,
    }))


if __name__ == "__main__":
    main()
