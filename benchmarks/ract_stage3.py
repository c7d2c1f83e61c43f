"""RaCT diagnostic: does stage 3 (actor-critic) move NDCG@100 on held-out users at all?

Runs stages 1 and 2 as `python -m coldrec_lib run ract` does, then stage 3 for all its epochs
(no early stop) and records validation *and test* NDCG@100 after every epoch. Test is only
recorded, never used to select anything: this measures the effect of stage 3 apart from the
noise of selecting its epoch on 100 validation users (notebook `04_ract`, section 8).

    python benchmarks/ract_stage3.py --seeds 0 1 2 3 4     # ML-100K, about 1 min per seed

Ends with one line of JSON with the figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from coldrec_lib.evaluation import Evaluator, describe_machine
from coldrec_lib.experiments import ract as experiment

SHARED_ML100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"
REPORTED_EPOCHS = (1, 2, 5, 10, 20, 30, 50)


class ValidAndTest:
    """Stands in for the validation evaluator: returns validation results (which the trainer
    selects on) and records test NDCG@100 of the same actor beside them."""

    def __init__(self, valid: Evaluator, test: Evaluator):
        self.valid, self.test, self.protocol = valid, test, valid.protocol
        self.curve: list[tuple[float, float]] = []

    def evaluate(self, model):
        actor = getattr(model, "actor", model)
        result = self.valid.evaluate(actor)
        self.curve.append((result.metrics["NDCG@100"],
                           self.test.evaluate(actor).metrics["NDCG@100"]))
        return result


def stage3_curve(dataset: str, data_path: str | None, seed: int,
                 finetune_lr: float | None) -> tuple[list[tuple[float, float]], dict]:
    """(valid, test) NDCG@100 before stage 3 (index 0) and after each of its epochs, and the
    per-seed evidence that stages 2 and 3 trained (`experiments.ract.stage_diagnostics`)."""
    settings = experiment.settings_for(dataset, "full")
    if finetune_lr is not None:
        settings["ract"]["finetune_lr"] = finetune_lr
    config = experiment.ract_config(settings)
    _, split = experiment.load_split(dataset, settings, seed, data_path)
    valid = Evaluator(split.valid, experiment.PROTOCOL, split.n_items)
    test = Evaluator(split.test, experiment.PROTOCOL, split.n_items)
    trainer = experiment.make_trainer(split, config, valid, seed)
    trainer.run_stage(1)
    stage2 = trainer.run_stage(2)
    critic = trainer.critic_valid.measure(trainer.actor, trainer.critic).metrics
    recorder = ValidAndTest(valid, test)
    trainer.valid = recorder
    trainer.config.patience = config.finetune_epochs + 1  # every epoch, no early stop
    stage3 = trainer.run_stage(3)
    return recorder.curve, experiment.stage_diagnostics(stage2, critic, stage3)


def mean_and_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k" if SHARED_ML100K.exists() else "synthetic")
    parser.add_argument("--data-path",
                        default=str(SHARED_ML100K) if SHARED_ML100K.exists() else None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="stage-3 actor learning rate (default: the full preset's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = [stage3_curve(args.dataset, args.data_path, seed, args.finetune_lr)
            for seed in args.seeds]
    curves = [curve for curve, _ in runs]
    lr = args.finetune_lr or experiment.settings_for(args.dataset, "full")["ract"]["finetune_lr"]
    print(f"{args.dataset}, full preset, stage-3 actor lr {lr:g}, seeds {args.seeds}; "
          f"{describe_machine()}")
    figures = {"benchmark": "ract_stage3", "dataset": args.dataset, "finetune_lr": lr,
               "seeds": args.seeds}
    print("did stages 2 and 3 train? per seed: critic epochs, validation R² of the critic after "
          "stage 2, std of its predictions vs the true NDCG@100's, relative change of the "
          "actor's weights after the last stage-3 epoch")
    for seed, (_, d) in zip(args.seeds, runs):
        print(f"  seed {seed}: {d['critic epochs']} epochs, R² {d['critic R2']:.3f}, std "
              f"{d['critic std']:.3f} vs {d['NDCG std']:.3f}, actor moved "
              f"{d['actor change, last']:.4f}")
    figures["critic_R2"] = [round(d["critic R2"], 4) for _, d in runs]
    figures["actor_change_last"] = [round(d["actor change, last"], 5) for _, d in runs]
    print("gain in NDCG@100 over the stage-1 actor after each stage-3 epoch "
          "(mean ± standard error over seeds)")
    for epoch in REPORTED_EPOCHS:
        if epoch >= len(curves[0]):
            break
        gains = {name: [c[epoch][i] - c[0][i] for c in curves]
                 for i, name in enumerate(("valid", "test"))}
        (valid_mean, valid_se), (test_mean, test_se) = (mean_and_se(gains["valid"]),
                                                        mean_and_se(gains["test"]))
        print(f"  epoch {epoch:>2}: valid {valid_mean:+.4f} ± {valid_se:.4f}   "
              f"test {test_mean:+.4f} ± {test_se:.4f}")
        figures[f"valid_gain_epoch{epoch}"] = valid_mean
        figures[f"test_gain_epoch{epoch}"] = test_mean
    best_valid = [max(0.0, max(v for v, _ in c[1:]) - c[0][0]) for c in curves]
    print(f"  validation gain of the best validation epoch (0 = none beat the stage-1 actor), "
          f"per seed: {', '.join(f'{g:+.4f}' for g in best_valid)}; mean {statistics.fmean(best_valid):+.4f}")
    figures["selected_valid_gain_mean"] = statistics.fmean(best_valid)
    best_test = [max(t for _, t in c[1:]) - c[0][1] for c in curves]
    print(f"  best test gain of any epoch, per seed (an oracle no selection can reach): "
          f"{', '.join(f'{g:+.4f}' for g in best_test)}")
    figures["oracle_test_gain_mean"] = statistics.fmean(best_test)
    print(json.dumps({k: round(v, 4) if "gain" in k else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
