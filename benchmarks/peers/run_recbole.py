"""Train one RecBole 1.2.1 sequential model on an exported coldrec split and log, per epoch, the
wall time (training + validation, test evaluation excluded) and the test NDCG@10.

Runs in RecBole's own venv (`build_recbole_venv.sh`); `compare.py` calls it:

    .venv-recbole/bin/python run_recbole.py --data DIR --model SASRec --budget 600 --out LOG

RecBole's defaults for sequential models are kept where the issue says so: full ranking without
masking the history (its sequential protocol), leave-one-out by time (`LS: valid_and_test`, the
exported timestamps are each user's coldrec order, so the split is coldrec's), and
``train_neg_sample_args=None`` with ``loss_type=CE`` (full softmax, as coldrec's). Checkpoints:
``saved=False`` (RecBole's default ``saved=True`` re-loads the best model with ``torch.load``,
which fails under torch >= 2.6's ``weights_only`` default).
"""
import argparse
import json
import time

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import get_model, init_seed

MODEL_ARGS = {  # coldrec's full preset: dim 64, 2 blocks / 1 GRU layer, max_len 50
    "SASRec": {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
               "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2},
    "BERT4Rec": {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
                 "hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1, "mask_ratio": 0.2},
    "GRU4Rec": {"embedding_size": 64, "hidden_size": 64, "num_layers": 1, "dropout_prob": 0.1},
    "NARM": {"embedding_size": 64, "hidden_size": 64, "n_layers": 1,
             "dropout_probs": [0.25, 0.5]},
}


class BudgetExhausted(Exception):
    pass


class TimedTrainer(Trainer):
    """RecBole's trainer, plus: after each validation, the test NDCG@10 (its time not counted)
    is logged; training stops once ``budget`` seconds are spent."""

    def __init__(self, config, model, test_data, budget, log):
        super().__init__(config, model)
        self.test_data, self.budget, self.log = test_data, budget, log
        self.begin, self.outside, self.epoch = time.perf_counter(), 0.0, 0

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress)
        elapsed = time.perf_counter() - self.begin - self.outside
        start = time.perf_counter()
        test = self.evaluate(self.test_data, load_best_model=False)
        self.epoch += 1
        row = {"epoch": self.epoch, "elapsed": elapsed, "valid NDCG@10": float(score),
               "test NDCG@10": float(test["ndcg@10"])}
        self.log.write(json.dumps(row) + "\n")
        self.log.flush()
        self.outside += time.perf_counter() - start
        if elapsed >= self.budget:
            raise BudgetExhausted
        return score, result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder holding <name>/<name>.inter")
    parser.add_argument("--dataset", default="coldrec-split")
    parser.add_argument("--model", default="SASRec", choices=sorted(MODEL_ARGS))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of wall time")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON-lines log, one row per epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = Config(model=args.model, dataset=args.dataset, config_dict={
        "data_path": args.data, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "eval_args": {"split": {"LS": "valid_and_test"},
                                                  "order": "TO", "mode": "full",
                                                  "group_by": "user"},
        "train_neg_sample_args": None, "loss_type": "CE", "metrics": ["NDCG", "Hit"],
        "topk": [10], "valid_metric": "NDCG@10", "epochs": args.epochs, "stopping_step": 5,
        "train_batch_size": 128, "eval_batch_size": 1024, "learning_rate": 1e-3,
        "saved": False, "show_progress": False, "seed": args.seed, "reproducibility": True,
        "use_gpu": False, "device": "cpu", "worker": 0, **MODEL_ARGS[args.model]})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train.dataset)
    with open(args.out, "w") as log:
        trainer = TimedTrainer(config, model, test, args.budget, log)
        try:
            trainer.fit(train, valid, saved=False, show_progress=False)
        except BudgetExhausted:
            pass


if __name__ == "__main__":
    main()
