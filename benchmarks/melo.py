"""MELO meta-training throughput: the vectorised MAML++ (`torch.func.vmap` over a meta-batch)
against a loop over tasks shaped like the authors' code, measured in one run.

    python benchmarks/melo.py [--backbones gru4rec narm sasrec bert4rec] [--iterations 3]
        [--data-path ../shared/data/ml-100k]

Both paths train the same model on the same fixed meta-batches of 16 tasks (3 inner steps,
second order, the authors' sizes: hidden 32, windows of 30, 25 support sub-windows, 3 queries).
The loop adapts the tasks one by one (``torch.autograd.grad(create_graph=True)`` per inner step,
every support row at full length) and back-propagates task by task, as the original does.
Evaluation (first-order adaptation, then prediction) is timed too. First the adapted query losses of both
are checked equal (to 1e-5) on a fixed batch; then tasks/s of each, the speedup, and the achieved
GFLOP/s of *both* paths (FLOPs counted by ``torch.utils.flop_counter``) as a fraction of
``torch.matmul``'s peak on this machine, measured in the same run.

**The ceiling.** A speedup over the loop can come from doing fewer FLOPs (the vectorised path
trims padding) or from running them faster. ``peak / loop GFLOP/s`` bounds the second: the
speedup if the vectorised path ran the loop's FLOPs at the matmul peak. Two more bounds are
printed: the same with the GFLOP/s of a plain ``torch.matmul`` at the loop's own layer sizes
(25 x 30 positions by hidden 32 / FFN 128: what any implementation of these layers gets at
best), and ``ceiling_with_trimming``: the vectorised path's tasks/s if its (fewer) FLOPs ran at
the peak, over the loop's tasks/s. Throughput is per CPU-second of the process (one thread), so
a loaded machine slows the figures little; wall-clock rates are in the JSON too. Ends with one
JSON line.
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


def matmul_peak_gflops(sizes=(256, 512, 1024), repeats: int = 30,
                       dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a square ``torch.matmul`` (fp32 unless ``dtype``) on this machine and thread
    count: the best over ``sizes`` of the best of ``repeats``. A 1024² product alone reads low on a shared core (its
    ~20-50 ms calls are preempted by other processes and its operands spill out of the core's
    cache): 29 vs 100 GFLOP/s for 512² in one run on this 2-core box."""
    best_rate = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.matmul(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, 2 * n ** 3 / best / 1e9)
    return best_rate


def layer_gemm_gflops(positions: int = 25 * 30, dim: int = 32, ffn: int = 128,
                      seconds: float = 0.3) -> float:
    """GFLOP/s of ``torch.matmul`` on the GEMMs of one attention block at the loop's sizes
    (``positions`` rows: a task's support rows x their length): the forward products (QKV,
    output, FFN in and out) and the weight gradients (``[dim, positions] @ [positions, out]``),
    each timed best-of over ``seconds``, total FLOPs over total best times."""
    shapes = [((positions, dim), (dim, 3 * dim)), ((positions, dim), (dim, dim)),
              ((positions, dim), (dim, ffn)), ((positions, ffn), (ffn, dim))]
    shapes += [((k, m), (m, n)) for (m, k), (_, n) in shapes]  # weight gradients
    flops, best_total = 0.0, 0.0
    for a_shape, b_shape in shapes:
        a, b = torch.randn(a_shape), torch.randn(b_shape)
        best, deadline = float("inf"), time.perf_counter() + seconds / len(shapes)
        while time.perf_counter() < deadline or best == float("inf"):
            start = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - start)
        flops += 2 * a_shape[0] * a_shape[1] * b_shape[1]
        best_total += best
    return flops / best_total / 1e9


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


def step_gflop(step, maml, tasks) -> float:
    """GFLOP of one meta-training step (``torch.utils.flop_counter``: matrix products)."""
    with FlopCounterMode(display=False) as counter:
        step(maml, meta_optimizer(maml, MELOConfig()), tasks)
    return counter.get_total_flops() / 1e9


def tasks_per_s(step, maml, optimizer, batches, warm_up: bool = True) -> tuple[float, float]:
    """Tasks per second of ``step`` over ``batches`` (the first one a warm-up if ``warm_up``):
    per CPU-second of this process (one thread: what the code costs, whatever else the machine
    runs) and per wall-clock second."""
    if warm_up:
        step(maml, optimizer, batches[0])
        batches = batches[1:]
    wall, cpu = time.perf_counter(), time.process_time()
    for tasks in batches:
        step(maml, optimizer, tasks)
    n = 16 * len(batches)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["gru4rec", "narm", "sasrec", "bert4rec"])
    parser.add_argument("--iterations", type=int, default=3, help="timed meta-batches per path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-path", type=Path, default=None,
                        help=f"folder with ML-100K's u.data (default {ML100K} if it exists, "
                             "else synthetic data of its size)")
    args = parser.parse_args()
    if args.data_path is not None and not (args.data_path / "u.data").exists():
        parser.error(f"--data-path {args.data_path}: no u.data (MovieLens 100K) there")
    torch.set_num_threads(args.threads)
    data, batches = data_and_tasks(args.iterations + 1, folder=args.data_path or ML100K)
    peak, layer_peak = matmul_peak_gflops(), layer_gemm_gflops()
    print(f"{data.name}: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} ratings; "
          f"{args.threads} thread(s); torch.matmul peak {peak:.1f} GFLOP/s, "
          f"{layer_peak:.1f} GFLOP/s at the loop's layer sizes; tasks per CPU-second of this "
          f"process (wall-clock in the JSON)")
    results = {}
    for backbone in args.backbones:
        for method, loss in (("MAML", "mse"), ("MELO", "lstm")):
            torch.manual_seed(0)
            maml = make_meta_learner(make_backbone(backbone, data.n_items, 32, 30),
                                     MELOConfig(loss=loss))
            maml.eval()  # no dropout: both paths compute the same numbers
            vectorised, _ = maml.adapt(batches[0], create_graph=True)
            loop = query_losses_loop(maml, batches[0])
            max_diff = float((vectorised - loop).abs().max().detach())
            gflop, loop_gflop = step_gflop(vectorised_step, maml, batches[0]), step_gflop(
                loop_step, maml, batches[0])
            fast, fast_wall = tasks_per_s(vectorised_step, maml,
                                          meta_optimizer(maml, MELOConfig()), batches)
            slow, slow_wall = tasks_per_s(loop_step, maml, meta_optimizer(maml, MELOConfig()),
                                          batches)
            evaluation, _ = tasks_per_s(lambda m, o, t: m.predict(t), maml, None, batches,
                                        warm_up=False)
            achieved, loop_achieved = gflop * fast / 16, loop_gflop * slow / 16
            row = {"vectorised_tasks_per_s": round(fast, 2), "loop_tasks_per_s": round(slow, 2),
                   "speedup": round(fast / slow, 2), "max_loss_diff": max_diff,
                   "wall_tasks_per_s": round(fast_wall, 2),
                   "wall_loop_tasks_per_s": round(slow_wall, 2),
                   "eval_tasks_per_s": round(evaluation, 2),
                   "gflop_per_meta_batch": round(gflop, 2), "gflops": round(achieved, 2),
                   "fraction_of_peak": round(achieved / peak, 4),
                   "loop_gflop_per_meta_batch": round(loop_gflop, 2),
                   "loop_gflops": round(loop_achieved, 2),
                   "loop_fraction_of_peak": round(loop_achieved / peak, 4),
                   "ceiling": round(peak / loop_achieved, 1),
                   "ceiling_at_layer_sizes": round(layer_peak / loop_achieved, 1),
                   "ceiling_with_trimming": round(peak * 16 / gflop / slow, 1),
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
            print(f"{'':8s} loop: {loop_gflop:.1f} GFLOP per meta-batch, {loop_achieved:.1f} "
                  f"GFLOP/s = {loop_achieved / peak:.1%} of matmul peak -> ceiling on the speedup "
                  f"{row['ceiling']:.1f}x at the matmul peak, {row['ceiling_at_layer_sizes']:.1f}x "
                  f"at the layers' own sizes, {row['ceiling_with_trimming']:.1f}x counting the "
                  f"vectorised path's trimmed FLOPs")
            assert max_diff < 1e-5, f"vectorised and loop adapted losses differ by {max_diff}"
    speedups = [r["speedup"] for r in results.values()]
    print(json.dumps({"benchmark": "melo", "speedup": min(speedups),
                      "tasks_per_s": {k: r["vectorised_tasks_per_s"] for k, r in results.items()},
                      "loop_tasks_per_s": {k: r["loop_tasks_per_s"] for k, r in results.items()},
                      "clock": "CPU time of the process",
                      "fraction_of_peak": {k: r["fraction_of_peak"] for k, r in results.items()},
                      "loop_fraction_of_peak": {k: r["loop_fraction_of_peak"]
                                                for k, r in results.items()},
                      "ceiling": {k: r["ceiling"] for k, r in results.items()},
                      "ceiling_at_layer_sizes": {k: r["ceiling_at_layer_sizes"]
                                                 for k, r in results.items()},
                      "ceiling_with_trimming": {k: r["ceiling_with_trimming"]
                                                for k, r in results.items()},
                      "peak_gflops": round(peak, 1), "layer_peak_gflops": round(layer_peak, 1),
                      "threads": args.threads, "data": data.name,
                      "results": results}))


if __name__ == "__main__":
    main()
