"""Command line: ``python -m coldrec_lib run <experiment> --dataset <name> --preset smoke|full``.

Prints the results table (with data, preset, seed, machine and protocols; every row says how
many users it was computed on) and writes it, with everything, as JSON to
``results/<experiment>-<dataset>-<preset>-seed<seed>.json`` (or ``--out``; ``--set`` overrides
are added to the default name; data read from ``--data-path`` adds ``@<digest>`` to the dataset,
and its path and sha256 are in the JSON, so other data's results are never replaced).
``--set key=value`` (repeatable) changes a preset's setting, e.g. ``--set sasrec_epochs=4
--set sasrec.n_layers=1``; ``--checkpoint-dir DIR`` (or ``--resume``:
``checkpoints/<experiment>-<dataset>-<preset>-seed<seed>``) keeps every finished model, so an
interrupted run started again loads them instead of training them again (with the same
``--threads``: a checkpoint trained with others is refused). A model whose training diverges is
named with its epoch; the sequential experiment still writes the other models' results, marks
its rows (``diverged in epoch``) and exits with status 1.
``python -m coldrec_lib reference <experiment> --dataset ml-100k --seeds 0 1 2`` makes the
reference table a notebook shows (`coldrec_lib.references`).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
from pathlib import Path

import torch

from .data import DATASETS
from .data.datasets import file_hash
from .data.errors import DataError
from .experiments import EXPERIMENTS, get_experiment, parse_overrides
from .references import REFERENCE_DIR, Reference, combine, run_reference
from .training import DIVERGED_COLUMN


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0; got {value}")
    return value


def data_identity(data_path: str | None) -> dict[str, str]:
    """The ``--data-path`` folder as the results record it: its resolved path and a sha256 over
    the names and contents of its files (two folders of different data never share a results
    file; the same files anywhere give the same digest). Empty without ``--data-path``."""
    if data_path is None:
        return {}
    folder = Path(data_path).resolve()
    if not folder.is_dir():
        raise ValueError(f"--data-path {data_path}: expected a folder holding the dataset's files")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.name}\0{file_hash(path, 'sha256')}\0".encode())
    return {"path": str(folder), "sha256": digest.hexdigest()}


def run_name(args, overrides: dict[str, str], data: dict[str, str]) -> str:
    """``<experiment>-<dataset>-<preset>-seed<seed>``, the first 8 digits of the data's digest
    after the dataset when read from ``--data-path``, and the overrides, as a file name."""
    dataset = args.dataset + (f"@{data['sha256'][:8]}" if data else "")
    name = f"{args.experiment}-{dataset}-{args.preset}-seed{args.seed}"
    name += "".join(f"-{key}={value}" for key, value in overrides.items())
    return re.sub(r"[^A-Za-z0-9_.=,@-]+", "_", name)


def check_writable(path: Path) -> None:
    """Fail now, not after the run, when the results cannot be written to ``path``."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name such as {path}/r.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ValueError(f"cannot write the results to {path}: {error.strerror or error}"
                         ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coldrec_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment end to end")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--dataset", default="synthetic",
                     help="synthetic, or a registered dataset: " + ", ".join(DATASETS) +
                          " (metatl-format: your own <name>_train.csv / <name>_test_new_user.csv "
                          "pair, read from --data-path)")
    run.add_argument("--data-path", default=None,
                     help="folder that already holds the dataset's files (no download)")
    run.add_argument("--preset", choices=["smoke", "full"], default="smoke")
    run.add_argument("--seed", type=non_negative_int, default=0)
    run.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                     help="override a preset setting (repeatable), e.g. --set sasrec_epochs=4 "
                          "--set sasrec.n_layers=1; an unknown key lists the valid ones")
    run.add_argument("--out", default=None, help="JSON file for the results table (default "
                                                 "results/<experiment>-<dataset>-<preset>-"
                                                 "seed<seed>.json)")
    run.add_argument("--checkpoint-dir", default=None,
                     help="keep finished models here; a run started again with the same data, "
                          "split, settings and seed loads them instead of training them again")
    run.add_argument("--resume", action="store_true",
                     help="--checkpoint-dir checkpoints/<experiment>-<dataset>-<preset>-"
                          "seed<seed>")
    run.add_argument("--threads", type=non_negative_int, default=1,
                     help="torch CPU threads (default 1: fastest for these small models on a "
                          "2-core CPU, see benchmarks/; 0 keeps torch's default)")
    reference = commands.add_parser(
        "reference", help="run an experiment over seeds and write its reference table "
                          "(coldrec_lib/reference_runs/<experiment>-<dataset>.json and .md)")
    reference.add_argument("experiment", choices=sorted(EXPERIMENTS))
    reference.add_argument("--dataset", default="ml-100k")
    reference.add_argument("--data-path", default=None,
                           help="folder that already holds the dataset's files (no download)")
    reference.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2])
    reference.add_argument("--threads", type=non_negative_int, default=1)
    reference.add_argument("--combine", nargs="+", metavar="JSON", default=None,
                           help="instead of running: combine reference files of the same "
                                "experiment made over other seeds (e.g. one seed per process)")
    reference.add_argument("--out-dir", default=None,
                           help="folder for the files (default: the package's reference_runs/)")
    commands.add_parser("list", help="list the experiments")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(EXPERIMENTS))
        return 0
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return run_command(args)
    except (DataError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_command(args) -> int:
    if args.command == "reference":
        if args.combine:
            result = combine([Reference.load(p) for p in args.combine])
        else:
            result = run_reference(args.experiment, args.dataset, args.seeds, args.data_path,
                                   threads=args.threads)
        print(result.describe())
        print(result.to_markdown())
        print(f"reference written to {result.save(args.out_dir or REFERENCE_DIR)}")
        return 0
    overrides = parse_overrides(args.overrides)
    data = data_identity(args.data_path)
    name = run_name(args, overrides, data)
    out = Path(args.out or f"results/{name}.json")
    check_writable(out)
    checkpoint_dir = args.checkpoint_dir or (f"checkpoints/{name}" if args.resume else None)
    experiment = get_experiment(args.experiment)
    table = experiment.run(args.dataset, args.preset, seed=args.seed, data_path=args.data_path,
                           progress=True, overrides=overrides, checkpoint_dir=checkpoint_dir)
    table.seed, table.overrides, table.data = args.seed, overrides, data
    print(table)
    replaced = out.exists()
    table.save_json(out)
    print(f"results written to {out}" + (" (replacing the earlier file)" if replaced else ""))
    diverged = {row["model"]: row[DIVERGED_COLUMN] for row in table.rows
                if DIVERGED_COLUMN in row}
    if diverged:
        print("error: training diverged (" + ", ".join(f"{model} in epoch {epoch}" for model, epoch
                                                       in diverged.items())
              + f"); the other models' results are in {out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
