"""Every notebooks/*.md has its paired .ipynb with the same cells (`jupytext --sync`)."""
from pathlib import Path

import jupytext
import pytest

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
def test_committed_ipynb_has_no_outputs(md):
    notebook = jupytext.read(md.with_suffix(".ipynb"))
    assert not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        f"{md.with_suffix('.ipynb').name} has stored outputs: clear them before committing")
