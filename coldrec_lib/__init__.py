"""coldrec: cold-start and sequential recommendation, taught notebook by notebook.

Subpackages: `data` (datasets, splits, tasks, synthetic data), `metrics` and `evaluation`
(protocols and the shared evaluator), `training` (seeding, fit loop, checkpoints), `models`
(one model per file), `experiments` (end-to-end runs behind ``python -m coldrec_lib``).
"""
__version__ = "0.1.0"
