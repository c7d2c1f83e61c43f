"""What a reader meets first: Jupyter in the dev extras, notebooks that ask Colab for a
GPU, one install URL, and a visible warning when a full run is slow or falls back."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from coldrec_lib import notebook
from coldrec_lib.notebook import INSTALL, SlowRunWarning, dataset_for_device, setup

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_opens_every_notebook_on_a_gpu_runtime(path):
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata.get("accelerator") == "GPU", f"{path.name}: no accelerator metadata"
    assert metadata.get("colab", {}).get("gpuType") == "T4", f"{path.name}: no colab gpuType"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_install_cell_installs_the_one_install_url(path):
    first_code = next(c for c in json.loads(path.read_text())["cells"]
                      if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert 'if "google.colab" in sys.modules:' in source
    assert f'%pip install -q "{INSTALL}"' in source, (
        f"{path.name}: the install cell must install coldrec_lib.notebook.INSTALL")


def test_dev_extras_bring_jupyter_and_tested_minimums():
    pyproject = (ROOT / "pyproject.toml").read_text()
    dev = pyproject.split("[project.optional-dependencies]")[1].split("\n[")[0]
    assert '"nbconvert>=' in dev and '"jupyter_core>=' in dev
    minimum = re.search(r'"matplotlib>=(\d+)\.(\d+)', pyproject).groups()
    assert tuple(map(int, minimum)) >= (3, 9)  # 3.7.5 breaks with IPython 9 (backend2gui)
    environment = (ROOT / "environment.yml").read_text()
    assert "- jupyter\n" in environment and "- ipywidgets" in environment


def test_jupyter_nbconvert_is_installed():
    if shutil.which("jupyter") is None:
        pytest.skip("jupyter not on PATH (install the dev extras)")
    pytest.importorskip("nbconvert")


def test_the_full_preset_on_a_cpu_says_so_loudly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(notebook.PRESET_ENV, "full")
    with pytest.warns(SlowRunWarning, match="FULL preset is running on a CPU"):
        session = setup(seed=0, cpu_threads=None)
    with pytest.warns(SlowRunWarning, match="falling back from ml-20m to the smaller ml-100k"):
        assert dataset_for_device(session, gpu="ml-20m", cpu="ml-100k") == "ml-100k"
    monkeypatch.setenv(notebook.PRESET_ENV, "smoke")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert setup(seed=0, cpu_threads=None).preset == "smoke"


def test_the_smoke_switch_is_documented_where_a_reader_looks():
    assert "COLDREC_PRESET=smoke" in notebook.__doc__


def test_stamp_fingerprints_each_code_cell_so_an_edit_shows(monkeypatch):
    """The stored outputs' stamp names the preset and one hash per code cell; editing one cell
    changes that cell's hash only (what tests/test_notebooks_in_sync.py relies on)."""
    import nbformat
    monkeypatch.setenv("COLDREC_PRESET", "full")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"),
                                         nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("print(x)")])
    notebook.stamp(nb, seconds=90)
    assert nb.metadata["coldrec"]["preset"] == "full" and nb.metadata["coldrec"]["minutes"] == 1.5
    ran = nb.metadata["coldrec"]["code"]
    nb.cells[2].source = "print(x + 1)"
    now = notebook.code_fingerprint(nb)
    assert len(ran) == len(now) == 2 and ran[0] == now[0] and ran[1] != now[1]
