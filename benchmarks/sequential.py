"""Training speed of the sequential backbones on a CPU, measured in one run.

    python benchmarks/sequential.py [--data-path ../shared/data/ml-100k] [--repeats 3]

1. **The GRU recurrence**, forward + backward on one batch of the full preset (16 windows of 51
   items, dimension 64): torch's ``nn.GRU`` over packed rows (the anchor: torch's own module,
   and what runs on a GPU), `GRURecurrence` (the same steps with a hand-written backward: the
   CPU path) and `unrolled_gru` (autograd over the written-out steps: MELO's path). Best of
   interleaved repeats; the speedup of each over ``nn.GRU``.
2. **One training epoch** of each backbone with the `sequential` experiment's full preset on
   ML-100K leave-one-out (sliding windows, every item a target; validation not included): the
   best of ``--repeats`` epochs, FLOPs counted by ``torch.utils.flop_counter`` on the same
   batches, GFLOP/s, and that as a fraction of ``torch.matmul``'s peak measured in the same run.
   The rest of an epoch's time is elementwise work (softmax, dropout's random numbers, GELU,
   the GRU's gates) that no matmul speed changes.

One torch thread. Ends with one JSON line. The end-to-end comparison with a peer library is
`benchmarks/peers/compare.py` (RecBole on the same split).
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

from coldrec_lib.data import leave_one_out, load_dataset  # noqa: E402
from coldrec_lib.experiments import preset_settings  # noqa: E402
from coldrec_lib.experiments import sequential as experiment  # noqa: E402
from coldrec_lib.models.sequential import (GRURecurrence, gru_layers, packed_gru,  # noqa: E402
                                           unrolled_gru)
from coldrec_lib.training import fit  # noqa: E402

from melo import ML100K, matmul_peak_gflops  # noqa: E402

GRU_PATHS = {"nn.GRU (packed)": packed_gru, "GRURecurrence": lambda gru, x, real: gru_layers(
    gru, x, real, GRURecurrence.apply), "unrolled_gru": unrolled_gru}


def gru_step_seconds(batch: int, length: int, dim: int, repeats: int) -> dict[str, float]:
    """Best forward + backward time of each GRU path on the same inputs (interleaved)."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(dim, dim, batch_first=True)
    x = torch.randn(batch, length, dim, requires_grad=True)
    real = torch.ones(batch, length, dtype=torch.bool)
    real[: batch // 4, : length // 2] = False          # a quarter of the rows half padding
    upstream = torch.randn(batch, length, dim)
    best = {name: float("inf") for name in GRU_PATHS}
    for _ in range(repeats):
        for name, path in GRU_PATHS.items():
            start = time.perf_counter()
            for _ in range(10):
                torch.autograd.backward(path(gru, x, real), upstream)
            best[name] = min(best[name], (time.perf_counter() - start) / 10)
    return best


def epoch_figures(name: str, split, settings: dict, repeats: int) -> dict:
    """One epoch's training time (`training.fit`'s own loop, the best of ``repeats`` epochs over
    the same batches) and its FLOPs."""
    model = experiment.build_backbone(name, split.n_items, settings, "cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.lr)
    sequences, generator = split.train_sequences(), torch.Generator().manual_seed(0)
    batches = list(model.epoch_batches(sequences, generator))
    with FlopCounterMode(display=False) as counter:
        fit(model, optimizer, lambda epoch: batches, max_epochs=1, progress=False)
    flops = counter.get_total_flops()
    result = fit(model, optimizer, lambda epoch: batches, max_epochs=repeats, progress=False)
    best = min(row["seconds"] for row in result.history)
    return {"seconds": best, "updates": len(batches), "gflop": flops / 1e9,
            "gflop_per_s": flops / best / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-path", default=str(ML100K))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=list(experiment.BACKBONES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = preset_settings(experiment.PRESETS, "full")
    shared = settings["backbone"]
    peak = matmul_peak_gflops()
    gru = gru_step_seconds(shared["batch_size"], shared["max_len"] + 1, shared["dim"],
                           repeats=10)
    gru_report = {name: {"ms": 1e3 * seconds, "speedup_over_nn_gru":
                         gru["nn.GRU (packed)"] / seconds} for name, seconds in gru.items()}
    print("GRU forward + backward, one batch:", json.dumps(gru_report), flush=True)
    split = leave_one_out(load_dataset("ml-100k", path=args.data_path))
    epochs = {}
    for name in args.models:
        figures = epoch_figures(name, split, settings, args.repeats)
        figures["fraction_of_peak"] = figures["gflop_per_s"] / peak
        epochs[name] = figures
        print(name, json.dumps(figures), flush=True)
    print(json.dumps({"benchmark": "sequential", "dataset": "ml-100k leave-one-out",
                      "threads": 1, "matmul_peak_gflop_per_s": peak, "gru_step": gru_report,
                      "epoch": epochs}))


if __name__ == "__main__":
    main()
