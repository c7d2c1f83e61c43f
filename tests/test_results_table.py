"""The results table says how many users each row was computed on and fits a terminal; the
JSON keeps every column."""
import json

import numpy as np

from coldrec_lib.evaluation import EvalResult, ResultsTable

METRICS = [f"{m}@{k}" for k in (1, 5, 10, 20, 50, 100) for m in ("HR", "NDCG", "Recall", "MAP")]


def table_with_many_columns() -> ResultsTable:
    table = ResultsTable("A title long enough to need wrapping: " + "x" * 120, "ml-100k", "full",
                         seed=2, overrides={"sasrec_epochs": "4"})
    for model, users in (("Popularity", 1776), ("MetaTL w/o inner step", 1776)):
        metrics = {name: 0.1234 for name in METRICS}
        table.add(EvalResult(model, "p" * 250, "test", users, metrics), "sampled-100", K=3)
    return table


def test_every_row_says_how_many_users_it_was_computed_on():
    table = table_with_many_columns()
    assert [row["users"] for row in table.rows] == [1776, 1776]
    assert list(table.to_frame(["MRR"]).columns) == ["model", "protocol", "users"]


def test_the_printed_table_fits_100_columns_and_keeps_every_metric(tmp_path):
    table = table_with_many_columns()
    text = str(table)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert all(name in text for name in METRICS) and "MetaTL w/o inner step" in text
    words = " ".join(text.split())  # the title is wrapped
    assert "seed: 2" in words and "sasrec_epochs=4" in words
    saved = json.loads(table.save_json(tmp_path / "r.json").read_text())
    assert saved["seed"] == 2 and saved["overrides"] == {"sasrec_epochs": "4"}
    assert set(METRICS) <= set(saved["rows"][0]) and saved["rows"][0]["users"] == 1776


def test_missing_numbers_are_valid_json_and_read_back(tmp_path):
    table = table_with_many_columns()
    table.rows[0].update({"T": float("nan"), "best epoch": np.float32("nan"), "ratio": np.inf})
    text = table.save_json(tmp_path / "r.json").read_text()

    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    saved = json.loads(text, parse_constant=refuse)  # what a strict reader accepts
    assert saved["rows"][0]["T"] is None and saved["rows"][0]["best epoch"] is None
    back = ResultsTable.load_json(tmp_path / "r.json")
    assert all(np.isnan(back.rows[0][key]) for key in ("T", "best epoch", "ratio"))
    assert back.rows[0]["NDCG@10"] == 0.1234 and back.rows[1] == table.rows[1]
    assert (back.seed, back.overrides, back.machine) == (table.seed, table.overrides, table.machine)
