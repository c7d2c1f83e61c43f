"""RaCT benchmark: seconds per epoch of each training stage, their achieved GFLOP/s as a fraction
of `torch.matmul`'s peak on the same matrix shapes (measured in the same run), and the batched
NDCG@100 target (`coldrec_lib.metrics.top_k_ndcg`) against a per-user Python loop.

FLOPs counted: the actor's matrix multiplies of one training step, 2*m*k*n each: forward,
weight gradients, and input gradients of every layer but the first (its input is data). Stage 3
runs the same ones (the critic's gradient reaches the actor through the NLL, so the whole actor
is differentiated); the critic's own 3 -> 100 -> 100 -> 10 -> 1 layers are under 0.1 % and not
counted. Everything else an epoch does (input masks, softmax, the NDCG@100 target's top-k, Adam)
is the gap between the achieved rate and the peak.

    python benchmarks/ract.py                       # ML-100K from ../shared/data if present
    python benchmarks/ract.py --dataset synthetic   # no data needed

Ends with one line of JSON with the figures.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from coldrec_lib.evaluation import Evaluator, describe_machine
from coldrec_lib.experiments import ract as experiment
from coldrec_lib.metrics import top_k_ndcg

SHARED_ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def per_user_ndcg(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """The loop the batched target replaces: one user at a time (as in RecBole's port)."""
    out = np.zeros(len(scores))
    for u in range(len(scores)):
        top = np.argsort(-scores[u])[:k]
        hits = relevant[u, top]
        dcg = float((hits / np.log2(np.arange(2, len(top) + 2))).sum())
        n_ideal = min(int(relevant[u].sum()), k)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(n_ideal))
        out[u] = dcg / max(idcg, 0.1)
    return out


def time_ndcg_target(n_users: int, n_items: int, repeats: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_users, n_items, generator=generator)
    held_out = torch.rand(n_users, n_items, generator=generator) < 0.005
    kept = (torch.rand(n_users, n_items, generator=generator) < 0.02) & ~held_out
    scores = logits.masked_fill(kept, float("-inf"))
    top_k_ndcg(scores, held_out, 100)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        batched = top_k_ndcg(scores, held_out, 100)
    batched_s = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    looped = per_user_ndcg(scores.numpy(), held_out.numpy(), 100)
    loop_s = time.perf_counter() - start
    assert np.allclose(batched.numpy(), looped, atol=1e-5), "the two NDCG targets disagree"
    return {"ndcg_batch": [n_users, n_items], "ndcg_target_batched_ms": 1e3 * batched_s,
            "ndcg_target_loop_ms": 1e3 * loop_s, "ndcg_target_speedup": loop_s / batched_s}


def actor_gemms(actor, batch_size: int) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every matrix multiply in one training step of the actor on a batch."""
    layers = [(layer.in_features, layer.out_features) for layer in (*actor.encoder,
                                                                      *actor.decoder)]
    shapes = []
    for i, (fan_in, fan_out) in enumerate(layers):
        shapes.append((batch_size, fan_in, fan_out))       # forward: x @ W^T
        shapes.append((fan_out, batch_size, fan_in))       # weight gradient: g^T @ x
        if i > 0:
            shapes.append((batch_size, fan_out, fan_in))   # input gradient: g @ W
    return shapes


def gemm_flops(shapes) -> float:
    return float(sum(2 * m * k * n for m, k, n in shapes))


def matmul_peak(shapes, seconds: float = 2.0) -> float:
    """GFLOP/s of `torch.matmul` alone on exactly these shapes, run back to back (best of 5
    rounds of about ``seconds / 5`` each)."""
    generator = torch.Generator().manual_seed(0)
    pairs = [(torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator))
             for m, k, n in shapes]
    flops = gemm_flops(shapes)

    def one_pass():
        for a, b in pairs:
            torch.matmul(a, b)

    one_pass()
    start = time.perf_counter()
    one_pass()
    repeats = max(1, int(seconds / 5 / max(time.perf_counter() - start, 1e-6)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            one_pass()
        best = min(best, (time.perf_counter() - start) / repeats)
    return flops / best / 1e9


def time_stages(dataset: str, data_path, epochs: int, seed: int = 0) -> dict:
    settings = experiment.settings_for(dataset, "full")
    settings["ract"].update(actor_epochs=epochs, critic_epochs=epochs, finetune_epochs=epochs,
                            patience=epochs)
    if "critic_min_epochs" in settings["ract"]:
        settings["ract"]["critic_min_epochs"] = epochs
    config = experiment.ract_config(settings)
    _, split = experiment.load_split(dataset, settings, seed, data_path)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    trainer = experiment.make_trainer(split, config, valid, seed)
    figures = {"dataset": dataset, "train_users": len(trainer.train_rows),
               "n_items": split.n_items, "batch_size": config.actor.batch_size}
    for stage in (1, 2, 3):
        seconds = [row["seconds"] for row in trainer.run_stage(stage).history if "seconds" in row]
        figures[f"stage{stage}_epoch_s"] = statistics.median(seconds)
    start = time.perf_counter()
    valid.evaluate(trainer.actor)
    figures["valid_eval_s"] = time.perf_counter() - start

    batch, users = config.actor.batch_size, len(trainer.train_rows)
    sizes = [batch] * (users // batch) + ([users % batch] if users % batch else [])
    epoch_flops = sum(gemm_flops(actor_gemms(trainer.actor, b)) for b in sizes)
    figures["epoch_gflop"] = epoch_flops / 1e9
    figures["matmul_peak_gflops"] = matmul_peak(actor_gemms(trainer.actor, batch))
    for stage in (1, 3):
        achieved = epoch_flops / figures[f"stage{stage}_epoch_s"] / 1e9
        figures[f"stage{stage}_gflops"] = achieved
        figures[f"stage{stage}_fraction_of_peak"] = achieved / figures["matmul_peak_gflops"]
    figures["fraction_of_peak"] = figures["stage1_fraction_of_peak"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k" if SHARED_ML100K.exists() else "synthetic")
    parser.add_argument("--data-path",
                        default=str(SHARED_ML100K) if SHARED_ML100K.exists() else None)
    parser.add_argument("--epochs", type=int, default=5, help="epochs timed per stage")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--ndcg-users", type=int, default=500, help="users in the target batch")
    parser.add_argument("--ndcg-items", type=int, default=20_108, help="items (ML-20M: 20,108)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_path = args.data_path if args.dataset != "synthetic" else None

    figures = {"benchmark": "ract", "machine": describe_machine()}
    figures.update(time_stages(args.dataset, data_path, args.epochs))
    for stage in (1, 2, 3):
        print(f"stage {stage}: {figures[f'stage{stage}_epoch_s']:.3f} s per epoch "
              f"({figures['train_users']:,} users x {figures['n_items']:,} items, batch "
              f"{figures['batch_size']})")
    print(f"validation pass: {figures['valid_eval_s']:.3f} s")
    print(f"actor matrix multiplies: {figures['epoch_gflop']:.2f} GFLOP per epoch; torch.matmul "
          f"peak on the same shapes: {figures['matmul_peak_gflops']:.1f} GFLOP/s")
    for stage in (1, 3):
        print(f"stage {stage}: {figures[f'stage{stage}_gflops']:.1f} GFLOP/s achieved = "
              f"{figures[f'stage{stage}_fraction_of_peak']:.0%} of that peak")
    figures.update(time_ndcg_target(args.ndcg_users, args.ndcg_items, repeats=5))
    print(f"NDCG@100 target on {args.ndcg_users} x {args.ndcg_items:,}: batched "
          f"{figures['ndcg_target_batched_ms']:.1f} ms, per-user loop "
          f"{figures['ndcg_target_loop_ms']:.1f} ms, speedup {figures['ndcg_target_speedup']:.1f}x")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
