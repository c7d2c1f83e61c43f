"""Models, one per file. Every one follows the `Recommender` contract (see `base.py`)."""
from .base import Recommender
from .bpr_mf import BPRMF, BPRMFConfig, pair_batches
from .metatl import MetaTL, MetaTLConfig
from .multvae import MultVAE, MultVAEConfig
from .popularity import Popularity
from .sasrec import SASRec, SASRecConfig

__all__ = ["Recommender", "BPRMF", "BPRMFConfig", "pair_batches", "MetaTL", "MetaTLConfig",
           "MultVAE", "MultVAEConfig", "Popularity", "SASRec", "SASRecConfig"]
