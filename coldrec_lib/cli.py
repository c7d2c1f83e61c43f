"""Command line: ``python -m coldrec_lib run <experiment> --dataset <name> --preset smoke|full``.

Prints the results table (with data, preset, machine and protocols) and writes it as JSON to
``results/<experiment>-<dataset>-<preset>.json`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .experiments import EXPERIMENTS, get_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coldrec_lib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment end to end")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--dataset", default="synthetic",
                     help="synthetic, or a registered dataset (ml-100k, ml-1m, ml-20m, electronics)")
    run.add_argument("--data-path", default=None,
                     help="folder that already holds the dataset's files (no download)")
    run.add_argument("--preset", choices=["smoke", "full"], default="smoke")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", default=None, help="JSON file for the results table")
    run.add_argument("--threads", type=int, default=1,
                     help="torch CPU threads (default 1: fastest for these small models on a "
                          "2-core CPU, see benchmarks/; 0 keeps torch's default)")
    commands.add_parser("list", help="list the experiments")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(EXPERIMENTS))
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    experiment = get_experiment(args.experiment)
    table = experiment.run(args.dataset, args.preset, seed=args.seed, data_path=args.data_path)
    print(table)
    out = Path(args.out or f"results/{args.experiment}-{args.dataset}-{args.preset}.json")
    table.save_json(out)
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
