"""MetaTL benchmark: coldrec's batched meta-training against a per-task loop and against an
anchor shaped like the authors' code, its fraction of ``torch.matmul`` peak, and evaluation speed.

1. Training throughput (tasks/s), measured in this one run on the same data (synthetic cold-start
   split), the same batch size (1,024 tasks), one torch thread:
   * per-task loop: the paper's algorithm written straightforwardly, tasks sampled in Python one
     at a time, each task's inner step and query loss computed on its own; one optimizer step per
     batch (same initial weights as coldrec: both are trained and tested, see below);
   * authors-shaped anchor: the structure of the authors' MetaTL code (wangjlgz/MetaTL
     ``models.py`` / ``trainer.py``), written here from its description: the batch arrives as
     nested Python lists of (head, user, tail) triples (their sampler runs in a separate worker
     process, so sampling is *not* timed for the anchor), ids become a tensor per batch, the
     relation MLP carries ``BatchNorm1d(K-1)`` after every layer and the mean is taken after the
     last layer, the inner gradient comes from a full ``backward(retain_graph=True)`` read off
     ``rel.grad``, then the query loss is back-propagated again;
   * coldrec: `TaskSampler` + `task_batches` + `MetaTL.loss` (sampling timed), and the model step
     alone on pre-built batches.
   The per-task loop and coldrec are evaluated on the same test users under the same protocols:
   the metrics should agree within noise (two standard errors of the per-user difference).
2. Achieved GFLOP/s of coldrec's training step: the relation MLP's matrix multiplies (forward,
   and backward for inputs and weights) are ~2.5 MFLOP per task at K=3; the same GEMM shapes and
   memory layouts are timed with ``torch.matmul`` alone in the same run, which is the peak this
   machine reaches on them; ``fraction_of_peak`` = achieved / peak (1.0 would mean every cycle of
   the step goes to those GEMMs).
3. coldrec throughput with ``torch.set_num_threads(1)`` vs 2.
4. Evaluation of 10,000 users x 101 candidates (inner step included), whole set in one batch.

Prints a human-readable report and ends with one line of JSON.

    python benchmarks/metatl.py            # a few minutes on a 2-core CPU
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
from torch import nn

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


# ---------------------------------------------------------------------- authors-shaped anchor
class AnchorRelation(nn.Module):
    """The authors' relation learner: per transition Linear -> BatchNorm1d(K-1) -> LeakyReLU ->
    Dropout twice, then Linear -> BatchNorm1d(K-1), then the mean over the K-1 transitions."""

    def __init__(self, k: int, dim: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        sizes, layers = (2 * dim, *hidden), []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.BatchNorm1d(k - 1), nn.LeakyReLU(),
                       nn.Dropout(dropout)]
        layers += [nn.Linear(sizes[-1], dim), nn.BatchNorm1d(k - 1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:  # [N, K-1, 2d] -> [N, 1, d]
        return self.layers(pairs).mean(1, keepdim=True)


class AnchorMetaTL(nn.Module):
    """One training step shaped like the authors' code (see the module docstring)."""

    def __init__(self, n_items: int, config: MetaTLConfig, k: int):
        super().__init__()
        self.items = nn.Embedding(n_items + 1, config.dim)
        self.relation = AnchorRelation(k, config.dim, config.hidden, config.dropout)
        self.config = config
        self.margin_loss = nn.MarginRankingLoss(config.margin)

    def scores(self, pairs: torch.Tensor, negative_pairs: torch.Tensor, relation: torch.Tensor):
        """``-||h + r - t||`` of positive and negative (head, tail) pairs ``[N, M, 2, d]``."""
        both = torch.cat([pairs, negative_pairs], 1)
        score = -torch.norm(both[:, :, 0] + relation - both[:, :, 1], 2, -1)
        return score[:, :pairs.shape[1]], score[:, pairs.shape[1]:]

    def step(self, triples: list, optimizer: torch.optim.Optimizer) -> None:
        """``triples``: support, support negatives, query, query negatives, each a nested list
        ``[task][transition] = [head, user, tail]`` as the authors' sampler queues them."""
        support, support_neg, query, query_neg = (
            self.items(torch.LongTensor([[[t[0], t[2]] for t in task] for task in part]))
            for part in triples)
        optimizer.zero_grad()
        relation = self.relation(support.flatten(2))
        relation.retain_grad()
        positive, negative = self.scores(support, support_neg, relation)
        self.zero_grad()
        self.margin_loss(positive, negative, torch.ones_like(positive)).backward(
            retain_graph=True)
        adapted = relation - self.config.beta * relation.grad
        positive, negative = self.scores(query, query_neg, adapted)
        self.margin_loss(positive, negative, torch.ones_like(positive)).backward()
        optimizer.step()


def anchor_batches(sequences: Sequences, n_items: int, n_batches: int, seed: int) -> list:
    """Batches in the authors' queue format, drawn beforehand (their worker process does this
    beside the training loop)."""
    random.seed(seed)
    user_items = python_user_lists(sequences)
    eligible = [u for u, items in user_items.items() if len(items) >= K + 1]
    batches = []
    for _ in range(n_batches):
        parts = [[], [], [], []]
        for _ in range(BATCH_SIZE):
            window, negatives = sample_task_python(user_items, eligible, n_items, K)
            user = 0  # the authors carry the user id in the middle of each triple; unused
            parts[0].append([[window[j], user, window[j + 1]] for j in range(K - 1)])
            parts[1].append([[window[j], user, negatives[j]] for j in range(K - 1)])
            parts[2].append([[window[K - 1], user, window[K]]])
            parts[3].append([[window[K - 1], user, negatives[K - 1]]])
        batches.append(parts)
    return batches


def train_anchor(n_items: int, batches: list) -> float:
    torch.manual_seed(0)
    model = AnchorMetaTL(n_items, MetaTLConfig(batch_size=BATCH_SIZE), K)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    model.train()
    start = time.perf_counter()
    for triples in batches:
        model.step(triples, optimizer)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- matmul peak
def gemm_shapes(config: MetaTLConfig, n_tasks: int, k: int) -> list[tuple[int, int, int, str]]:
    """Every matrix multiply of one coldrec training step on ``n_tasks`` tasks, as
    ``(m, inner, n, layout)``: forward ``X @ W.T`` of the relation MLP (its hidden layers on the
    ``n_tasks * (k-1)`` transitions, its output layer on the ``n_tasks`` means), and backward
    ``G @ W`` (input gradient) and ``G.T @ X`` (weight gradient) of every layer."""
    sizes = (2 * config.dim, *config.hidden, config.dim)
    shapes = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        rows = n_tasks if layer == len(sizes) - 2 else n_tasks * (k - 1)
        shapes += [(rows, fan_in, fan_out, "X @ W.T"), (rows, fan_out, fan_in, "G @ W"),
                   (fan_out, rows, fan_in, "G.T @ X")]
    return shapes


def matmul_seconds(shapes, repeats: int) -> float:
    """Seconds ``torch.matmul`` takes for all of ``shapes`` once (median of ``repeats``, as the
    training step's median batch: on a shared machine both see the same load), with the operands
    laid out as autograd lays them out (transposed views where the step has them)."""
    operands = []
    for m, inner, n, layout in shapes:
        if layout == "X @ W.T":
            operands.append((torch.randn(m, inner), torch.randn(n, inner).t()))
        elif layout == "G.T @ X":
            operands.append((torch.randn(inner, m).t(), torch.randn(inner, n)))
        else:
            operands.append((torch.randn(m, inner), torch.randn(inner, n)))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in operands:
            torch.matmul(a, b)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


# ---------------------------------------------------------------------- coldrec
def train_coldrec(model: MetaTL, sequences: Sequences, n_items: int, n_batches: int,
                  seed: int) -> list[float]:
    """Seconds of each batch: sampling (`task_batches` draws lazily), loss, backward, Adam."""
    sampler = TaskSampler(sequences, k=K)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    model.train()
    seconds, start = [], time.perf_counter()
    for batch in task_batches(sampler, n_items, BATCH_SIZE, n_batches, generator):
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
    return seconds


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
    config = MetaTLConfig(batch_size=BATCH_SIZE)
    initial = MetaTL(split.n_items, config)
    reference, coldrec = copy.deepcopy(initial), copy.deepcopy(initial)
    print(f"data: {split!r}; K={K}, {n_batches} batches of {BATCH_SIZE} tasks each, "
          f"1 torch thread")
    n_tasks = n_batches * BATCH_SIZE

    torch.manual_seed(1)
    reference_tasks_per_s = n_tasks / train_reference(reference, sequences, split.n_items,
                                                       n_batches, seed=1)
    torch.manual_seed(1)
    batch_seconds = train_coldrec(coldrec, sequences, split.n_items, n_batches, seed=1)
    tasks_per_s = n_tasks / sum(batch_seconds)
    anchor_tasks_per_s = n_tasks / train_anchor(
        split.n_items, anchor_batches(sequences, split.n_items, n_batches, seed=1))
    print(f"per-task loop:           {reference_tasks_per_s:9.1f} tasks/s")
    print(f"authors-shaped anchor:   {anchor_tasks_per_s:9.1f} tasks/s (sampling not timed: "
          f"the authors sample in a worker process)")
    print(f"coldrec batched MetaTL:  {tasks_per_s:9.1f} tasks/s (sampling timed) -> "
          f"{tasks_per_s / reference_tasks_per_s:.1f}x the per-task loop, "
          f"{tasks_per_s / anchor_tasks_per_s:.2f}x the anchor")

    shapes = gemm_shapes(config, BATCH_SIZE, K)
    flop = sum(2 * m * inner * n for m, inner, n, _ in shapes)
    peak = flop / matmul_seconds(shapes, repeats=5 if args.quick else 20)
    achieved = flop / statistics.median(batch_seconds)
    print(f"relation-MLP matrix multiplies: {flop / BATCH_SIZE / 1e6:.2f} MFLOP per task; "
          f"torch.matmul alone on the same shapes: {peak / 1e9:.1f} GFLOP/s")
    print(f"coldrec training (median batch): {achieved / 1e9:.1f} GFLOP/s = "
          f"{achieved / peak:.0%} of that peak (shapes: "
          f"{', '.join(f'{m}x{i}x{n}' for m, i, n, _ in shapes)})")

    threads = {}
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        n = max(2, n_batches // 3)
        seconds = sum(train_coldrec(copy.deepcopy(initial), sequences, split.n_items, n, seed=2))
        threads[n_threads] = round(n * BATCH_SIZE / seconds, 1)
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
        "speedup_vs_authors_anchor": round(tasks_per_s / anchor_tasks_per_s, 2),
        "tasks_per_s": round(tasks_per_s, 1),
        "reference_tasks_per_s": round(reference_tasks_per_s, 1),
        "anchor_tasks_per_s": round(anchor_tasks_per_s, 1),
        "gflop_per_s": round(achieved / 1e9, 1), "matmul_peak_gflop_per_s": round(peak / 1e9, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "mflop_per_task": round(flop / BATCH_SIZE / 1e6, 3),
        "tasks_per_s_1_thread": threads[1], "tasks_per_s_2_threads": threads[2],
        "batch_size": BATCH_SIZE, "k": K, "n_tasks": n_tasks,
        "test_mrr": {p: {m: row[m] for m in ("reference", "coldrec")}
                     for p, row in agreement.items()},
        "metrics_within_noise": all(row["within_noise"] for row in agreement.values()),
        **evaluation,
    }))


if __name__ == "__main__":
    main()
