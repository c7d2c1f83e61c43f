"""Data layer: datasets, your own data, filters, splits, sequences and K-shot tasks."""
from .datasets import DATASETS, cache_dir, load_dataset, read_metatl_format, verify_file
from .errors import ChecksumError, DataError, DownloadError
from .filters import filter_min_counts, filter_rating, k_core
from .interactions import PAD, Interactions
from .sequences import Sequences, Tasks, TaskSampler
from .splits import (ColdStartSplit, EvalBatch, EvalSet, Split, cold_start_by_part,
                     cold_start_by_time, heldout_users, last_n_horizon, leave_one_out)
from .synthetic import make_synthetic

__all__ = ["DATASETS", "cache_dir", "load_dataset", "read_metatl_format", "verify_file",
           "ChecksumError", "DataError", "DownloadError",
           "filter_min_counts", "filter_rating", "k_core", "PAD", "Interactions", "Sequences",
           "Tasks", "TaskSampler", "ColdStartSplit", "EvalBatch", "EvalSet", "Split",
           "cold_start_by_part", "cold_start_by_time", "heldout_users", "last_n_horizon",
           "leave_one_out", "make_synthetic"]
