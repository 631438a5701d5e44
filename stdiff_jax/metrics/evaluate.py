"""All four benchmark metrics, repeated, as mean and 95% t-interval (the protocol's report), and
the memorisation check (`stdiff_jax.metrics.memorisation`)."""

import time

from absl import logging
import numpy as np
import scipy.stats

from stdiff_jax.metrics.correlational import correlational_score, correlational_scores
from stdiff_jax.metrics.discriminative import discriminative_score, discriminative_scores
from stdiff_jax.metrics.fid import context_fid, context_fids
from stdiff_jax.metrics.inputs import check_windows
from stdiff_jax.metrics.memorisation import reference_check
from stdiff_jax.metrics.predictive import predictive_score, predictive_scores

# Each metric as `f(real, fake, seed) -> float`, and as `f(real, fake, seeds) -> [float]` with
# all repeats computed at once (the trained metrics train their R networks in one program).
METRICS = {
    "context_fid": context_fid,
    "correlational": correlational_score,
    "discriminative": discriminative_score,
    "predictive": predictive_score,
}
REPEATED = {
    "context_fid": context_fids,
    "correlational": correlational_scores,
    "discriminative": discriminative_scores,
    "predictive": predictive_scores,
}
MEMORISATION = "memorisation"  # The check's key in `evaluate`'s result, beside the metrics'.


def summarize(values):
    """`{"mean", "ci95", "values"}`: ci95 is `sem * t.ppf(0.975, n - 1)` (None for n = 1)."""
    values = [float(v) for v in values]
    ci95 = None
    if len(values) > 1:
        ci95 = float(scipy.stats.sem(values) * scipy.stats.t.ppf(0.975, len(values) - 1))
    return {"mean": float(np.mean(values)), "ci95": ci95, "values": values}


def evaluate(real, fake, repeats=5, seed=0, metrics=tuple(METRICS), options=None, progress=None,
             held_out=None, held_out_source=None):
    """Scores `fake` against `real` with each metric `repeats` times, and checks for memorisation.

    Args:
        real, fake: (N, L, K) windows in [0, 1] (generated ones mapped back with (x + 1) / 2).
        repeats: independent repeats per metric (the protocol's 5); repeat r uses seed + r and
            scores what `METRICS[metric](real, fake, seed + r)` scores, but all repeats of a
            metric are computed together.
        seed: base seed; the same seed gives the same numbers.
        metrics: names from `METRICS`, scored in the given order.
        options: optional `{metric name: keyword arguments}`, e.g. fewer iterations for a smoke
            run (`{"predictive": {"iterations": 100}}`); the defaults follow the protocol.
        progress: optional callable `(metric, repeat, value)` called for every score, once all
            repeats of that metric are done.
        held_out: optional (H, L, K) real windows the model never trained on, in `real`'s units
            (`stdiff_jax.data.held_out`), the memorisation check's reference; `real` must then be
            the windows the model trained on.
        held_out_source: what `held_out` is (e.g. "fresh draws of the generator"), or, with no
            `held_out`, why there is none (the check is then reported as not available). With
            neither argument there is no check (`modes.evaluate_workdir`, behind the command
            line and the benchmark tables, always passes one).

    Returns:
        A JSON-serialisable dict `{metric: {"mean", "ci95", "values", "seconds"}}`, plus, when
        held_out or held_out_source is given, `{MEMORISATION: memorisation_check(...)'s dict,
        with "held_out": held_out_source when available}` or, without held_out,
        `{MEMORISATION: {"available": False, "reason": held_out_source}}`.
    """
    real, fake = check_windows(real, fake)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {sorted(METRICS)}.")
    # The check takes seconds, so a bad held-out set fails before the metrics' minutes.
    check = None
    if held_out is not None or held_out_source is not None:
        check = reference_check(real, fake, held_out, held_out_source, seed=seed)
    if check is not None:
        logging.info("memorisation: %s", check)
    options = options or {}
    results = {}
    for name in metrics:
        start = time.perf_counter()
        values = REPEATED[name](real, fake, [seed + r for r in range(repeats)],
                                **options.get(name, {}))
        for r, value in enumerate(values):
            logging.info("%s repeat %d/%d: %.6f", name, r + 1, repeats, value)
            if progress is not None:
                progress(name, r, value)
        results[name] = summarize(values)
        results[name]["seconds"] = time.perf_counter() - start
    if check is not None:
        results[MEMORISATION] = check
    return results
