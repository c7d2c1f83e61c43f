"""The committed T4 estimates of each notebook's full run (`benchmarks/full_run_estimate.py`):
every notebook present with finite, positive figures, and the estimate's formula."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "full_run_estimate.py"
COMMITTED = ROOT / "benchmarks" / "full_run_estimate.json"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
FIGURES = ("gflop_per_epoch", "ops_per_epoch", "t4_minutes_reference", "t4_minutes_cap",
           "cpu_minutes_per_seed_ml100k")


@pytest.fixture(scope="module")
def estimate():
    spec = importlib.util.spec_from_file_location("full_run_estimate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_committed_json_has_every_notebook_with_positive_finite_figures():
    committed = json.loads(COMMITTED.read_text())
    assert committed["estimate"] is True
    assert sorted(committed["notebooks"]) == NOTEBOOKS
    for stem, row in committed["notebooks"].items():
        assert row["estimate"] is True and row["dataset"] and row["models"], stem
        for key in FIGURES:
            assert math.isfinite(row[key]) and row[key] > 0, (stem, key, row[key])
        assert row["t4_minutes_cap"] >= row["t4_minutes_reference"], stem
        for model, epochs in row["epochs_reference"].items():
            assert 0 < epochs <= row["epochs_cap"][model], (stem, model)


def test_estimate_matches_a_hand_computation(estimate):
    # 2.43e12 FLOPs at 8.1e12 x 0.3 FLOP/s is 1 s; 1e6 operations at 10 us is 10 s
    seconds = estimate.t4_seconds(2.43e12, 1e6, efficiency=0.3)
    assert seconds["compute_s"] == pytest.approx(1.0)
    assert seconds["launch_s"] == pytest.approx(10.0)
    assert estimate.t4_minutes(2.43e12, 1e6, efficiency=0.3) == pytest.approx(11 / 60)


def test_estimate_grows_with_flops_and_operations_and_falls_with_efficiency(estimate):
    base = estimate.t4_minutes(1e12, 1e5)
    assert estimate.t4_minutes(2e12, 1e5) > base
    assert estimate.t4_minutes(1e12, 2e5) > base
    assert estimate.t4_minutes(1e12, 1e5, efficiency=0.6) < base
    assert estimate.t4_minutes(0, 0) == 0


def test_epochs_are_best_plus_patience_at_most_the_cap(estimate):
    assert estimate.epochs(24.3, 20, 200) == pytest.approx(44.3)
    assert estimate.epochs(190, 20, 200) == 200
    assert estimate.epochs(None, 20, 200) == 200


def test_counter_counts_a_matrix_product(estimate):
    import torch
    a, b = torch.ones(4, 8), torch.ones(8, 16)
    flops, ops = estimate.count(lambda: a @ b)
    assert flops == 2 * 4 * 8 * 16 and ops >= 1


def minutes(value: float) -> str:
    """How the notebooks write an estimate: "under a minute", "9.3 min", "43 min"."""
    return "under a minute" if value < 1 else f"{value:.0f} min" if value >= 10 else f"{value:.1f} min"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_each_notebook_states_the_committed_estimate(stem):
    """The T4 figures typed in a notebook's "The full run" note are the committed JSON's."""
    row = json.loads(COMMITTED.read_text())["notebooks"][stem]
    text = (ROOT / "notebooks" / f"{stem}.md").read_text()
    lines = text[text.index("**The full run.**"):].split("\n")
    paragraph = lines[:next(i for i, line in enumerate(lines) if not line.startswith(">") and i)]
    note = " ".join(line.lstrip("> ") for line in paragraph)
    assert "**estimated**" in note and "benchmarks/full_run_estimate.py" in note
    for key in ("t4_minutes_reference", "t4_minutes_cap"):
        assert minutes(row[key]) in note, (stem, key, minutes(row[key]), note)
