"""The unconditional-generation benchmark metrics (Context-FID, correlational, discriminative,
predictive), each `f(real, fake, seed) -> float` on (N, L, K) windows in [0, 1], lower is better.

The plots live in `stdiff_jax.metrics.plots` (optional extra `plots`: matplotlib, scikit-learn).
"""

from stdiff_jax.metrics.correlational import correlational_score
from stdiff_jax.metrics.discriminative import discriminative_score
from stdiff_jax.metrics.evaluate import METRICS, evaluate
from stdiff_jax.metrics.fid import context_fid
from stdiff_jax.metrics.predictive import predictive_score

__all__ = [
    "METRICS",
    "context_fid",
    "correlational_score",
    "discriminative_score",
    "evaluate",
    "predictive_score",
]
