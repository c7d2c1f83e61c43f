"""Models. Every one follows the `Recommender` contract (see `base.py`)."""
from .base import Recommender
from .bpr_mf import BPRMF, BPRMFConfig, pair_batches
from .popularity import Popularity

__all__ = ["Recommender", "BPRMF", "BPRMFConfig", "pair_batches", "Popularity"]
