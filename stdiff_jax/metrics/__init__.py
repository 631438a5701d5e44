"""The unconditional-generation benchmark metrics (Context-FID, correlational, discriminative,
predictive), each `f(real, fake, seed) -> float` on (N, L, K) windows in [0, 1], lower is better,
and `f(real, fake, seeds) -> [float]` (plural names) scoring every repeat at once; and the
memorisation check (`memorisation_check`: generated windows' distances to the training set against
held-out real windows'), which `evaluate` reports beside them.

The plots live in `stdiff_jax.metrics.plots` (optional extra `plots`: matplotlib, scikit-learn).
"""

from stdiff_jax.metrics.correlational import correlational_score, correlational_scores
from stdiff_jax.metrics.discriminative import discriminative_score, discriminative_scores
from stdiff_jax.metrics.evaluate import MEMORISATION, METRICS, REPEATED, evaluate
from stdiff_jax.metrics.fid import context_fid, context_fids
from stdiff_jax.metrics.memorisation import memorisation_check, nearest_distances
from stdiff_jax.metrics.predictive import predictive_score, predictive_scores

__all__ = [
    "MEMORISATION",
    "METRICS",
    "REPEATED",
    "context_fid",
    "context_fids",
    "correlational_score",
    "correlational_scores",
    "discriminative_score",
    "discriminative_scores",
    "evaluate",
    "memorisation_check",
    "nearest_distances",
    "predictive_score",
    "predictive_scores",
]
