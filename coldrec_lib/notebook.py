"""Notebook set-up: the preset (smoke for the test harness, full for readers), seeding, device.

A reader who opens a notebook gets the **full** preset on the real dataset. The smoke switch
runs any notebook in about a minute on a CPU, on small synthetic data:

    COLDREC_PRESET=smoke jupyter nbconvert --to notebook --execute --output-dir executed \
        notebooks/00_foundations.ipynb

``pytest --nbval notebooks/`` sets ``COLDREC_PRESET=smoke`` itself (``notebooks/conftest.py``).
The full preset on a CPU, or a dataset swapped for a smaller one because there is no GPU, is
said with a visible warning (`setup`, `dataset_for_device`). On Colab the first cell installs
coldrec from `INSTALL` (the one place that names it; tests check every notebook uses it).
"""
from __future__ import annotations

import datetime
import inspect
import os
import platform
import sys
import warnings
from dataclasses import dataclass

import torch

from .training import default_device, seed_everything

PRESET_ENV = "COLDREC_PRESET"
PRESETS = ("smoke", "full")
# What a notebook's Colab install cell installs: %pip install -q "<INSTALL>"
INSTALL = "coldrec @ git+https://github.com/coldrec/coldrec.git"


class SlowRunWarning(UserWarning):
    """The full preset runs without a GPU, or on a smaller dataset than the notebook's own."""


def on_colab() -> bool:
    return "google.colab" in sys.modules


def current_preset() -> str:
    preset = os.environ.get(PRESET_ENV, "full")
    if preset not in PRESETS:
        raise ValueError(f"environment variable {PRESET_ENV}: expected one of {PRESETS}; "
                         f"got {preset!r}")
    return preset


@dataclass
class Session:
    preset: str
    device: torch.device
    seed: int
    generator: torch.Generator

    def __str__(self) -> str:
        """One line that dates and places the run whose outputs follow (the outputs stored in
        a committed notebook say here which run made them)."""
        where = "Colab" if on_colab() else "local"
        return (f"preset={self.preset} | device={self.device} ({device_name(self.device)}) | "
                f"seed={self.seed} | {where}, {utc_date()} | torch {torch.__version__}, "
                f"{torch.get_num_threads()} of {os.cpu_count()} CPU thread(s)")


def utc_date() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where the system reports one."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def setup(seed: int = 0, cpu_threads: int | None = 1) -> Session:
    """Pick the preset and device, seed everything, and set torch's CPU threads.

    One thread by default, measured on a 2-core CPU (benchmarks/): a RaCT stage-1 epoch takes
    0.16 s on one thread vs 0.48 s on two; MetaTL and BPR-MF are 1.2-1.6x faster on two threads
    when the machine is otherwise idle, and slower when other work shares the cores.
    ``cpu_threads=None`` keeps torch's default."""
    device = default_device()
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    preset = current_preset()
    if preset == "full" and device.type == "cpu":
        warnings.warn("the FULL preset is running on a CPU: expect long runs (on Colab: Runtime "
                      "> Change runtime type > GPU; for a one-minute check set "
                      f"{PRESET_ENV}=smoke)", SlowRunWarning, stacklevel=2)
    return Session(preset, device, seed, seed_everything(seed))


def dataset_for_device(session: Session, gpu: str, cpu: str) -> str:
    """``gpu`` when the session has a GPU, else ``cpu``, with a visible warning that the
    notebook falls back to a smaller dataset (its numbers are then not the paper's)."""
    if session.device.type == "cuda":
        return gpu
    warnings.warn(f"no GPU: falling back from {gpu} to the smaller {cpu}; the results below are "
                  f"{cpu}'s, not comparable to the paper's {gpu} numbers", SlowRunWarning,
                  stacklevel=2)
    return cpu


def show_source(*functions) -> None:
    """Display the library's own lines of each function (or class), highlighted: the code a
    notebook sets beside the equation it computes."""
    from IPython.display import Code, display
    for function in functions:
        display(Code(inspect.getsource(function), language="python"))


def plain_log_ticks(axis, low: float, high: float,
                    steps=(1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000)) -> None:
    """Label a log ``axis`` (``ax.xaxis``) with the values themselves (1, 3, 10, ..., or the
    ``steps`` a figure uses, e.g. its support sizes) between ``low`` and ``high`` instead of
    powers of ten."""
    from matplotlib.ticker import NullFormatter
    ticks = [t for t in steps if low <= t <= high]
    axis.set_ticks(ticks, labels=[f"{t:,}" for t in ticks])
    axis.set_minor_formatter(NullFormatter())


def code_fingerprint(notebook) -> list[str]:
    """A short sha256 of each code cell's source, in order."""
    import hashlib
    return [hashlib.sha256(cell.source.strip().encode()).hexdigest()[:16]
            for cell in notebook.cells if cell.cell_type == "code"]


def stamp(notebook, seconds: float) -> None:
    """Record in the notebook's metadata which code its stored outputs come from (`execute`):
    `jupytext --sync` keeps an edited cell's old outputs, so a test compares this fingerprint
    with the code as it stands."""
    notebook.metadata["coldrec"] = {
        "preset": current_preset(), "minutes": round(seconds / 60, 1),
        "executed": utc_date(),
        "code": code_fingerprint(notebook)}


def execute(path, workdir=None) -> float:
    """Run a notebook top to bottom in a fresh kernel and store its outputs in place (the
    outputs committed with each notebook); returns the seconds it took.

    The preset, the data folders (``$COLDREC_PATH_ML_100K``) and the thread count come from
    this process's environment. Progress bars are stored as text in their final state (streams
    coalesced), not as widgets, which GitHub and a not-yet-run Colab notebook cannot draw. The
    kernel works in ``workdir`` (by default a fresh temporary folder, so a full run starts from
    no checkpoint). A failing cell raises, and the notebook on disk is left as it was."""
    import tempfile
    import time
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{path.stem}-"))
    os.environ["QT_API"] = os.environ.get("QT_API", "")  # tqdm.auto: console bars, not widgets
    started = time.perf_counter()
    NotebookClient(notebook, timeout=None, kernel_name="python3", coalesce_streams=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    seconds = time.perf_counter() - started
    stamp(notebook, seconds)
    staging = path.with_name(f".{path.name}.tmp")
    nbformat.write(notebook, staging)
    os.replace(staging, path)
    return seconds


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m coldrec_lib.notebook",
        description="Execute notebooks in place, storing their outputs (the preset comes from "
                    f"${PRESET_ENV}, data folders from $COLDREC_PATH_<DATASET>).")
    parser.add_argument("notebooks", nargs="+", help=".ipynb files")
    for name in parser.parse_args().notebooks:
        print(f"{name}: executed in {execute(name) / 60:.1f} min", flush=True)
