"""Models, one per file. Every one follows the `Recommender` contract (see `base.py`)."""
from .base import Recommender
from .bpr_mf import BPRMF, BPRMFConfig, pair_batches
from .metatl import MetaTL, MetaTLConfig
from .multvae import MultVAE, MultVAEConfig
from .popularity import Popularity
from .successor import MostFrequentSuccessor
from .sasrec import SASRec, SASRecConfig
from .sequential import SequentialBackbone, SequentialConfig, cloze_batches, next_item_batches
from .gru4rec import GRU4Rec, GRU4RecConfig
from .narm import NARM, NARMConfig
from .bert4rec import BERT4Rec, BERT4RecConfig

__all__ = ["Recommender", "BPRMF", "BPRMFConfig", "pair_batches", "MetaTL", "MetaTLConfig",
           "MultVAE", "MultVAEConfig", "Popularity", "MostFrequentSuccessor", "SASRec",
           "SASRecConfig",
           "SequentialBackbone", "SequentialConfig", "cloze_batches", "next_item_batches",
           "GRU4Rec", "GRU4RecConfig", "NARM", "NARMConfig", "BERT4Rec", "BERT4RecConfig"]
