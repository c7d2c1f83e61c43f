"""Reference tables: aggregation over seeds, files, and the check that re-runs them."""
import json
import math

import numpy as np
import pytest

from coldrec_lib.cli import main
from coldrec_lib.references import (REFERENCE_DIR, Reference, aggregate, combine, differences,
                                    load_reference, run_reference)


def _rows(seed_values):
    return {seed: [{"model": "A", "protocol": "full", "K": 3, "best epoch": epoch, "MRR": mrr},
                   {"model": "B", "protocol": "full", "K": 3, "best epoch": 4, "MRR": mrr / 2}]
            for seed, (epoch, mrr) in seed_values.items()}


def test_aggregate_gives_mean_and_standard_error_and_keeps_constant_keys():
    rows = aggregate(_rows({0: (3, 0.2), 1: (5, 0.3), 2: (7, 0.7)}))
    values = np.array([0.2, 0.3, 0.7])
    assert rows[0]["model"] == "A" and rows[0]["K"] == 3 and "K SE" not in rows[0]
    assert rows[0]["MRR"] == pytest.approx(values.mean())
    assert rows[0]["MRR SE"] == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert rows[0]["best epoch"] == pytest.approx(5.0) and rows[0]["best epoch SE"] > 0
    assert rows[1]["best epoch"] == 4 and "best epoch SE" not in rows[1]  # same in every seed
    reference = Reference("x", "d", "full", [0, 1, 2], "cmd", "t", "m", 1, [1.0] * 3, rows)
    assert list(reference.summary(["best epoch"])["best epoch"]) == ["5.0000 ± 1.1547", "4"]


def test_aggregate_refuses_seeds_whose_rows_do_not_match():
    tables = _rows({0: (3, 0.2), 1: (5, 0.3)})
    tables[1][0]["model"] = "C"
    with pytest.raises(ValueError, match="column 'model' differs"):
        aggregate(tables)
    tables[1] = tables[1][:1]
    with pytest.raises(ValueError, match="different lengths"):
        aggregate(tables)


def test_reference_round_trip_summary_and_differences(tmp_path):
    reference = run_reference("foundations", "synthetic", seeds=(0, 1), preset="smoke",
                              progress=False)
    assert [row["seed"] for row in reference.per_seed].count(0) == len(reference.rows)
    summary = reference.summary(["NDCG@10"])
    assert list(summary.columns) == ["model", "protocol", "users", "NDCG@10"]  # users: a key
    assert all(" ± " in cell for cell in summary["NDCG@10"])
    path = reference.save(tmp_path)
    assert path.with_suffix(".md").read_text().count("reference foundations") == 1
    loaded = Reference.load(path)
    assert differences(loaded, reference) == []
    again = run_reference("foundations", "synthetic", seeds=(0, 1), preset="smoke",
                          progress=False)
    assert differences(reference, again) == []  # seeded: the same numbers on CPU
    loaded.per_seed[0]["NDCG@10"] += 0.01
    assert len(differences(loaded, reference)) == 1


def test_missing_reference_names_the_command_that_makes_it():
    with pytest.raises(FileNotFoundError, match="python -m coldrec_lib reference nope"):
        load_reference("nope", "ml-100k")


def test_cli_reference_writes_json_and_markdown(tmp_path, monkeypatch):
    import coldrec_lib.experiments.foundations as foundations
    monkeypatch.setitem(foundations.PRESETS, "full", foundations.PRESETS["smoke"])
    assert main(["reference", "foundations", "--dataset", "synthetic", "--seeds", "0", "1",
                 "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "foundations-synthetic.json").exists()
    assert "±" in (tmp_path / "foundations-synthetic.md").read_text()


def test_references_run_seed_by_seed_combine_into_the_run_over_all_seeds(tmp_path):
    together = run_reference("foundations", "synthetic", seeds=(0, 1), preset="smoke",
                             progress=False)
    paths = []
    for seed in (0, 1):
        piece = run_reference("foundations", "synthetic", seeds=(seed,), preset="smoke",
                              progress=False)
        paths.append(str(piece.save(tmp_path / f"s{seed}")))
    assert main(["reference", "foundations", "--dataset", "synthetic", "--combine", *paths,
                 "--out-dir", str(tmp_path)]) == 0
    combined = Reference.load(tmp_path / "foundations-synthetic.json")
    assert combined.rows == together.rows and combined.per_seed == together.per_seed
    assert combined.command == together.command
    assert combined.diagnostics == together.diagnostics == {"0": {}, "1": {}}  # one per seed
    with pytest.raises(ValueError, match="repeated seeds"):
        combine([combined, combined])


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_missing_numbers_are_null_in_a_reference_and_read_back_as_nan(tmp_path):
    rows = _rows({0: (3, 0.2), 1: (5, float("nan"))})
    reference = Reference("x", "d", "full", [0, 1], "cmd", "t", "m", 1, [1.0] * 2,
                          aggregate(rows), per_seed=[{**row, "seed": seed}
                                                     for seed, table in rows.items()
                                                     for row in table])
    path = reference.save(tmp_path)
    _strict(path.read_text())  # valid JSON: no bare NaN token
    loaded = Reference.load(path)
    assert math.isnan(loaded.per_seed[2]["MRR"]) and loaded.per_seed[0]["MRR"] == 0.2


@pytest.mark.parametrize("path", sorted(REFERENCE_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_committed_references_are_valid_json(path):
    _strict(path.read_text())
