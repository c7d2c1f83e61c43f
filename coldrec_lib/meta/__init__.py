"""Meta-learning machinery shared by the meta-learned models (MELO's MAML++)."""
from .maml import MAML, MAMLConfig, SquaredError, multi_step_weights

__all__ = ["MAML", "MAMLConfig", "SquaredError", "multi_step_weights"]
