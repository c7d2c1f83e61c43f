"""How many CPU threads should small models use? Measures, in one run, a BPR-MF training epoch
and a full-ranking evaluation with 1 thread and with torch's default, on the same data.

    python benchmarks/threads.py [--users 3000 --items 1500]

Ends with one line of JSON, e.g. {"benchmark": "threads", "train_speedup_1_thread": 1.8, ...}.
`coldrec_lib.notebook.setup()` uses 1 thread on the CPU because of these figures.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from coldrec_lib.data import leave_one_out, make_synthetic
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.models import BPRMF, pair_batches


def seconds(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=1500)
    args = parser.parse_args()
    data = make_synthetic(n_users=args.users, n_items=args.items, seed=0)
    split = leave_one_out(data)
    evaluator = Evaluator(split.test, FullRanking(), data.n_items)
    default_threads = torch.get_num_threads()
    figures = {"benchmark": "threads", "users": args.users, "items": args.items,
               "default_threads": default_threads}
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = BPRMF(data.n_users, data.n_items)
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

        def epoch():
            for batch in pair_batches(split.train, data.n_items, 1024, torch.Generator().manual_seed(0)):
                loss = model.loss(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        figures[f"train_epoch_s_{threads}_threads"] = round(seconds(epoch), 4)
        figures[f"eval_s_{threads}_threads"] = round(seconds(lambda: evaluator.evaluate(model)), 4)
        print(f"{threads} thread(s): epoch {figures[f'train_epoch_s_{threads}_threads']:.3f} s, "
              f"evaluation {figures[f'eval_s_{threads}_threads']:.3f} s")
    figures["train_speedup_1_thread"] = round(
        figures[f"train_epoch_s_{default_threads}_threads"] / figures["train_epoch_s_1_threads"], 2)
    figures["eval_speedup_1_thread"] = round(
        figures[f"eval_s_{default_threads}_threads"] / figures["eval_s_1_threads"], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
