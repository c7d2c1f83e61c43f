"""Every notebooks/*.md has its paired .ipynb with the same cells (`jupytext --sync`), and the
.ipynb stores the outputs of one full run of that code."""
from pathlib import Path

import jupytext
import pytest

from coldrec_lib.notebook import code_fingerprint

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PAIRS = sorted(p for p in NOTEBOOKS.glob("*.md") if p.name != "README.md")


def cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_there_are_notebooks():
    assert PAIRS, "no notebooks/*.md found"


@pytest.mark.parametrize("md", PAIRS, ids=lambda p: p.stem)
def test_pair_is_in_sync(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{md.name} has no paired {ipynb.name}: run jupytext --sync {md}"
    assert cells(jupytext.read(md)) == cells(jupytext.read(ipynb)), (
        f"{md.name} and {ipynb.name} differ: run jupytext --sync {md}")


@pytest.mark.parametrize("md", PAIRS, ids=lambda p: p.stem)
def test_committed_ipynb_holds_the_outputs_of_one_full_run(md):
    """GitHub and a not-yet-run Colab notebook show the stored outputs: they must come from one
    top-to-bottom run of the full preset (`python -m coldrec_lib.notebook`) of the code as it
    stands. `jupytext --sync` keeps an edited cell's old outputs, so the run's fingerprint of
    every code cell is compared with the code in the .md."""
    notebook = jupytext.read(md.with_suffix(".ipynb"))
    run = notebook.metadata.get("coldrec", {})
    assert run.get("preset") == "full", (
        f"{md.with_suffix('.ipynb').name} holds no stamped full-preset run: "
        f"python -m coldrec_lib.notebook {md.with_suffix('.ipynb')}")
    code_now = code_fingerprint(jupytext.read(md))
    edited = [i for i, (ran, now) in enumerate(zip(run["code"], code_now)) if ran != now]
    assert len(run["code"]) == len(code_now) and not edited, (
        f"code cells {edited} of {md.name} changed since its stored outputs were made: re-run it")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, (
        f"{md.with_suffix('.ipynb').name}: code cells {[i for i, n in enumerate(counts) if n is None]}"
        " were not run: re-run the notebook (python -m coldrec_lib.notebook NOTEBOOK.ipynb)")
    assert counts == list(range(1, len(code) + 1)), "cells were not run once each, top to bottom"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"], "a stored output is an error"
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in
                o.get("data", {})], "a progress bar stored as a widget (GitHub cannot draw it)"
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure among the outputs"
    session_line = next(o.text for o in outputs if o.output_type == "stream"
                        and o.text.startswith("preset="))
    assert session_line.startswith("preset=full"), (
        f"the stored outputs are not the full preset's: {session_line.strip()}")
    intro = " ".join(c.source for c in notebook.cells[:4] if c.cell_type == "markdown")
    assert "Stored outputs" in intro, "the top of the notebook does not say which run made them"
