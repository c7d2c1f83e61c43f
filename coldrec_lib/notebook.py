"""Notebook set-up: the preset (smoke for the test harness, full for readers), seeding, device.

``pytest --nbval notebooks/`` sets ``COLDREC_PRESET=smoke`` (in ``notebooks/conftest.py``), so a
reader never has to; a reader who opens the notebook gets the full preset on the real dataset.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from .training import default_device, seed_everything

PRESET_ENV = "COLDREC_PRESET"
PRESETS = ("smoke", "full")


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
        where = "Colab" if on_colab() else "local"
        return (f"preset={self.preset} | device={self.device} | seed={self.seed} | {where} | "
                f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")


def setup(seed: int = 0, cpu_threads: int | None = 1) -> Session:
    """Pick the preset and device, seed everything, and set torch's CPU threads.

    One thread by default, measured on a 2-core CPU (benchmarks/): a RaCT stage-1 epoch takes
    0.16 s on one thread vs 0.48 s on two; MetaTL and BPR-MF are 1.2-1.6x faster on two threads
    when the machine is otherwise idle, and slower when other work shares the cores.
    ``cpu_threads=None`` keeps torch's default."""
    device = default_device()
    if cpu_threads is not None and device.type == "cpu":
        torch.set_num_threads(cpu_threads)
    return Session(current_preset(), device, seed, seed_everything(seed))
