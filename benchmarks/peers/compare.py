"""coldrec against RecBole 1.2.1 on the *same* split: NDCG@10 against wall time per library, and
the ratio of coldrec's time to reach RecBole's best NDCG@10 within the same budget.

    bash benchmarks/peers/build_recbole_venv.sh          # once
    python benchmarks/peers/compare.py --data-path ../shared/data/ml-100k --budget 600 \
        [--models SASRec GRU4Rec NARM BERT4Rec] [--recbole-python benchmarks/peers/.venv-recbole/bin/python]

Both libraries: ML-100K leave-one-out (coldrec's split, exported with each user's coldrec order
as timestamps so RecBole's ``LS: valid_and_test`` cuts the same items), one CPU thread, dim 64,
max_len 50, full-softmax CE, full ranking *without* masking the history (RecBole's sequential
protocol), test NDCG@10 logged after every epoch (its evaluation time not counted). RecBole runs
in its own venv (`run_recbole.py`); coldrec runs here with the `sequential` experiment's full
preset, its epoch cap lifted to RecBole's (``--epochs``) so that the wall-time budget and the
same early stopping (5 epochs without a better validation NDCG@10) end both. RecBole's curves are
the expensive part: ``--reuse-recbole`` reads the per-epoch logs of an earlier run in ``--out``
instead of training RecBole again. Ends with ONE line of JSON.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from coldrec_lib.data import leave_one_out, load_dataset
from coldrec_lib.evaluation import Evaluator, FullRanking
from coldrec_lib.experiments import apply_overrides, parse_overrides, preset_settings
from coldrec_lib.experiments import sequential as experiment
from coldrec_lib.training import seed_everything

HERE = Path(__file__).resolve().parent
UNMASKED = FullRanking(ks=(10,), mask_history=False)


def export_atomic(data, folder: Path, name: str) -> Path:
    """``<folder>/<name>/<name>.inter`` in RecBole's atomic format; the timestamp is each
    interaction's position in its user's coldrec order (ties in the raw times broken as coldrec
    breaks them)."""
    frame = data.frame
    out = folder / name / f"{name}.inter"
    out.parent.mkdir(parents=True, exist_ok=True)
    order = frame.groupby("user").cumcount()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{t}" for u, i, t in zip(frame["user"], frame["item"], order)]
    out.write_text("\n".join(lines) + "\n")
    return out


def coldrec_curve(name, split, budget, seed, epochs, overrides, log: Path) -> list[dict]:
    """coldrec's full preset (``overrides`` as ``--set`` gives them), one row per epoch, also
    written to ``log`` (JSON lines, like RecBole's)."""
    settings = preset_settings(experiment.PRESETS, "full")
    settings.update(time_budget=budget, patience=5, max_epochs=epochs)
    settings = apply_overrides(settings, overrides, "coldrec's settings")
    test = Evaluator(split.test, UNMASKED, split.n_items)
    _, result = experiment.train_backbone(
        name, split, settings, seed_everything(seed),
        callback=lambda epoch, model: {"test NDCG@10": test.evaluate(model).metrics["NDCG@10"]})
    rows = [{"epoch": r["epoch"], "elapsed": r["elapsed"], "test NDCG@10": r["test NDCG@10"]}
            for r in result.history]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return rows


def recbole_curve(name, data_folder, budget, seed, epochs, python, reuse) -> list[dict]:
    log = data_folder / f"recbole-{name}.jsonl"
    if not (reuse and log.exists() and log.read_text().strip()):
        subprocess.run([python, str(HERE / "run_recbole.py"), "--data", str(data_folder),
                        "--model", name, "--budget", str(budget), "--seed", str(seed),
                        "--epochs", str(epochs), "--out", str(log)],
                       check=True, cwd=data_folder)  # RecBole logs to ./log
    return [json.loads(line) for line in log.read_text().splitlines()]


def summarise(coldrec: list[dict], recbole: list[dict]) -> dict:
    best = max(recbole, key=lambda r: r["test NDCG@10"])
    reached = next((r for r in coldrec if r["test NDCG@10"] >= best["test NDCG@10"]), None)
    return {
        "recbole": {"best NDCG@10": best["test NDCG@10"], "seconds to best": best["elapsed"],
                    "epochs": len(recbole), "seconds": recbole[-1]["elapsed"]},
        "coldrec": {"best NDCG@10": max(r["test NDCG@10"] for r in coldrec),
                    "epochs": len(coldrec), "seconds": coldrec[-1]["elapsed"],
                    "seconds to RecBole's best": None if reached is None else reached["elapsed"]},
        "time ratio (coldrec / RecBole, to RecBole's best)":
            None if reached is None else reached["elapsed"] / best["elapsed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--models", nargs="*", default=list(experiment.BACKBONES))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per model and library")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=200, help="epoch cap of both libraries")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of coldrec's full preset (as in `run --set`)")
    parser.add_argument("--reuse-recbole", action="store_true",
                        help="read RecBole's per-epoch logs from an earlier run in --out")
    parser.add_argument("--out", default=str(HERE / "out"))
    parser.add_argument("--recbole-python", default=str(HERE / ".venv-recbole" / "bin" / "python"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = parse_overrides(args.set)
    data = load_dataset("ml-100k", path=args.data_path)
    split = leave_one_out(data)
    folder = Path(args.out)
    export_atomic(data, folder, "coldrec-split")
    report = {}
    for name in args.models:
        recbole = recbole_curve(name, folder, args.budget, args.seed, args.epochs,
                                args.recbole_python, args.reuse_recbole)
        coldrec = coldrec_curve(name, split, args.budget, args.seed, args.epochs, overrides,
                                folder / f"coldrec-{name}.jsonl")
        report[name] = summarise(coldrec, recbole)
        print(name, json.dumps(report[name]), flush=True)
    print(json.dumps({"benchmark": "peers_recbole", "dataset": "ml-100k leave-one-out",
                      "protocol": UNMASKED.describe(data.n_items), "budget_s": args.budget,
                      "max_epochs": args.epochs, "recbole_reused": args.reuse_recbole,
                      "coldrec_overrides": overrides, "threads": 1, "models": report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
