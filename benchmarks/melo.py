"""MELO meta-training throughput: the vectorised MAML++ (`torch.func.vmap` over a meta-batch)
against a loop over tasks shaped like the authors' code, measured in one run.

    python benchmarks/melo.py [--backbones sasrec bert4rec] [--iterations 3]

Both paths train the same model on the same fixed meta-batches of 16 tasks (3 inner steps,
second order, the authors' sizes: hidden 32, windows of 30, 25 support sub-windows, 3 queries).
The loop adapts the tasks one by one (``torch.autograd.grad(create_graph=True)`` per inner step,
every support row at full length) and back-propagates task by task, as the original does.
Evaluation (first-order adaptation, then prediction) is timed too. First the adapted query losses of both
are checked equal (to 1e-5) on a fixed batch; then tasks/s of each, the speedup, and the achieved
GFLOP/s of the vectorised path (FLOPs counted by ``torch.utils.flop_counter``) as a fraction of
``torch.matmul``'s peak on this machine, measured in the same run. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coldrec_lib.data import Sequences, filter_min_counts, load_dataset, make_synthetic  # noqa: E402
from coldrec_lib.data.melo_tasks import melo_tasks  # noqa: E402
from coldrec_lib.experiments.melo import make_backbone  # noqa: E402
from coldrec_lib.meta.maml import query_losses_loop  # noqa: E402
from coldrec_lib.models.melo import MELOConfig, make_meta_learner, meta_optimizer  # noqa: E402

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
# The issue's anchor: the authors' code on ML-100K, 16 tasks per meta-batch, 3 inner steps,
# one thread (meta-training tasks/s).
AUTHORS_EVAL_TASKS_PER_S = "20-27"  # evaluation (adapt + predict), any backbone
AUTHORS_TASKS_PER_S = {("gru4rec", "MAML"): 6.3, ("gru4rec", "MELO"): 6.7,
                       ("sasrec", "MAML"): 8.7, ("sasrec", "MELO"): 9.4}


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """GFLOP/s of a square fp32 ``torch.matmul`` on this machine and thread count (best of)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def data_and_tasks(n_batches: int, seed: int = 0, folder: Path = ML100K):
    """ML-100K with the authors' filter (items >= 50 ratings, users >= 5) when ``folder`` holds
    it, else synthetic data of the same size; ``n_batches`` fixed meta-batches of 16 tasks."""
    if (Path(folder) / "u.data").exists():
        data = filter_min_counts(load_dataset("ml-100k", path=folder), min_user=5, min_item=50)
    else:
        data = make_synthetic(n_users=943, n_items=603, min_len=20, max_len=150, seed=seed)
    sequences = Sequences.from_frame(data.frame, data.n_users)
    generator = torch.Generator().manual_seed(seed)
    batches = [melo_tasks(sequences, torch.randint(data.n_users, (16,), generator=generator),
                          30, 25, 3, train=True, generator=generator) for _ in range(n_batches)]
    return data, batches


def vectorised_step(maml, optimizer, tasks):
    optimizer.zero_grad()
    maml.loss(tasks).backward()
    optimizer.step()


def loop_step(maml, optimizer, tasks):
    """The authors' shape: one task at a time, its inner loop, its query loss backward."""
    optimizer.zero_grad()
    weights = maml.step_weights()
    for t in range(len(tasks)):
        losses = query_losses_loop(maml, tasks.rows([t]))[0]
        ((losses * weights).sum() / len(tasks)).backward()
    optimizer.step()


def tasks_per_s(step, maml, optimizer, batches) -> float:
    step(maml, optimizer, batches[0])  # warm-up
    start = time.perf_counter()
    for tasks in batches[1:]:
        step(maml, optimizer, tasks)
    return 16 * (len(batches) - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "bert4rec"])
    parser.add_argument("--iterations", type=int, default=3, help="timed meta-batches per path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-path", type=Path, default=ML100K,
                        help="folder with ML-100K's u.data (else synthetic data of its size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, batches = data_and_tasks(args.iterations + 1, folder=args.data_path)
    peak = matmul_peak_gflops()
    print(f"{data.name}: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} ratings; "
          f"{args.threads} thread(s); torch.matmul peak {peak:.1f} GFLOP/s")
    results = {}
    for backbone in args.backbones:
        for method, loss in (("MAML", "mse"), ("MELO", "lstm")):
            torch.manual_seed(0)
            maml = make_meta_learner(make_backbone(backbone, data.n_items, 32, 30),
                                     MELOConfig(loss=loss))
            maml.eval()  # no dropout: both paths compute the same numbers
            vectorised, _ = maml.adapt(batches[0], create_graph=True)
            loop = query_losses_loop(maml, batches[0])
            max_diff = float((vectorised - loop).abs().max())
            with FlopCounterMode(display=False) as counter:
                vectorised_step(maml, meta_optimizer(maml, MELOConfig()), batches[0])
            gflop = counter.get_total_flops() / 1e9
            fast = tasks_per_s(vectorised_step, maml, meta_optimizer(maml, MELOConfig()), batches)
            slow = tasks_per_s(loop_step, maml, meta_optimizer(maml, MELOConfig()), batches)
            start = time.perf_counter()
            for tasks in batches:
                maml.predict(tasks)
            evaluation = 16 * len(batches) / (time.perf_counter() - start)
            achieved = gflop * fast / 16
            row = {"vectorised_tasks_per_s": round(fast, 2), "loop_tasks_per_s": round(slow, 2),
                   "speedup": round(fast / slow, 2), "max_loss_diff": max_diff,
                   "eval_tasks_per_s": round(evaluation, 2),
                   "gflop_per_meta_batch": round(gflop, 2), "gflops": round(achieved, 2),
                   "fraction_of_peak": round(achieved / peak, 4),
                   "authors_tasks_per_s": AUTHORS_TASKS_PER_S.get((backbone, method))}
            results[f"{backbone} {method}"] = row
            anchor = row["authors_tasks_per_s"]
            versus = (f"authors' code: {anchor} tasks/s ({fast / anchor:.1f}x)" if anchor
                      else "authors' code: no anchor")
            print(f"{backbone:8s} {method}: vectorised {fast:7.2f} tasks/s | loop {slow:6.2f} "
                  f"tasks/s | speedup {fast / slow:5.2f}x | adapted losses equal to "
                  f"{max_diff:.1e} | {gflop:.1f} GFLOP per meta-batch, {achieved:.1f} GFLOP/s = "
                  f"{achieved / peak:.1%} of matmul peak | {versus} | evaluation "
                  f"{evaluation:.1f} tasks/s (authors' {AUTHORS_EVAL_TASKS_PER_S})")
            assert max_diff < 1e-5, f"vectorised and loop adapted losses differ by {max_diff}"
    speedups = [r["speedup"] for r in results.values()]
    print(json.dumps({"benchmark": "melo", "speedup": min(speedups),
                      "tasks_per_s": {k: r["vectorised_tasks_per_s"] for k, r in results.items()},
                      "loop_tasks_per_s": {k: r["loop_tasks_per_s"] for k, r in results.items()},
                      "fraction_of_peak": {k: r["fraction_of_peak"] for k, r in results.items()},
                      "peak_gflops": round(peak, 1), "threads": args.threads,
                      "results": results}))


if __name__ == "__main__":
    main()
