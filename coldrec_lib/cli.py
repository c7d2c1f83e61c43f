"""Command line: ``python -m coldrec_lib run <experiment> --dataset <name> --preset smoke|full``.

Prints the results table (with data, preset, machine and protocols) and writes it as JSON to
``results/<experiment>-<dataset>-<preset>.json`` (or ``--out``).
``python -m coldrec_lib reference <experiment> --dataset ml-100k --seeds 0 1 2`` makes the
reference table a notebook shows (`coldrec_lib.references`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .experiments import EXPERIMENTS, get_experiment
from .references import REFERENCE_DIR, run_reference


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
    reference = commands.add_parser(
        "reference", help="run an experiment over seeds and write its reference table "
                          "(coldrec_lib/reference_runs/<experiment>-<dataset>.json and .md)")
    reference.add_argument("experiment", choices=sorted(EXPERIMENTS))
    reference.add_argument("--dataset", default="ml-100k")
    reference.add_argument("--data-path", default=None,
                           help="folder that already holds the dataset's files (no download)")
    reference.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    reference.add_argument("--threads", type=int, default=1)
    reference.add_argument("--out-dir", default=None,
                           help="folder for the files (default: the package's reference_runs/)")
    commands.add_parser("list", help="list the experiments")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(EXPERIMENTS))
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.command == "reference":
        result = run_reference(args.experiment, args.dataset, args.seeds, args.data_path,
                               threads=args.threads)
        print(result.describe())
        print(result.to_markdown())
        print(f"reference written to {result.save(args.out_dir or REFERENCE_DIR)}")
        return 0
    experiment = get_experiment(args.experiment)
    table = experiment.run(args.dataset, args.preset, seed=args.seed, data_path=args.data_path)
    print(table)
    out = Path(args.out or f"results/{args.experiment}-{args.dataset}-{args.preset}.json")
    table.save_json(out)
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
