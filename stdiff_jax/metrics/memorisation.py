"""The memorisation check: are generated windows closer to the training windows than new real ones?

Each window is a point in R^(L K) ([0, 1] units) and its distance to the training set is the
Euclidean distance to its nearest training window, found exactly. A model that copies training
windows gives generated distances near 0; one that generalises gives distances like those of real
windows it never trained on (`held_out`). Two numbers summarise it:

- `median_ratio`: median generated distance / median held-out distance (copies ~0, fresh ~1);
- `share_closer`: the share of generated windows closer to the training set than the 1st
  percentile of the held-out distances (fresh ~0.01; copies ~1); with fewer than
  PERCENTILE_HELD_OUT held-out windows (a UCR test set of 40), closer than the nearest held-out
  one, where a fresh window lands with probability 1 / (H + 1) (`reference_share`).

A labelled model's samples are checked as a whole and class by class (`per_class_memorisation`):
each class's generated windows against the held-out windows of that class, both measured to the
nearest training window of any class.

What counts as held out is the caller's choice (`stdiff_jax.data.held_out`): the data's
held-out block, or fresh draws of a generated data set; with neither the check is reported as not
available, with the reason, rather than against a stand-in reference.
"""

import time

import numpy as np

# Float32 bytes of one chunk's distance matrix: 64 MiB bounds the memory whatever N.
CHUNK_BYTES = 64 * 2 ** 20
# Queries scored per set: a random subset of larger sets. 10,000 distances put the median and the
# 1st percentile (100 points below it) within about 1% and bound the cost by 10,000 x N.
MAX_QUERIES = 10_000
# The 1st percentile of fewer distances is just their minimum, so below this many held-out windows
# the threshold is their minimum; below MIN_HELD_OUT even the median is too rough to report.
PERCENTILE_HELD_OUT = 100
MIN_HELD_OUT = 10
PERCENTILE = 1.0


def nearest_distances(queries, reference, chunk_bytes=CHUNK_BYTES):
    """(Q,) float64 Euclidean distance from each query window to its nearest reference window.

    Args:
        queries: (Q, L, K) windows; reference: (N, L, K) windows.
        chunk_bytes: memory of one chunk's (chunk, N) float32 distance matrix.

    The search is exhaustive: |q|^2 + |r|^2 - 2 q.r in float32 matrix products (on windows
    centred on the reference mean, which shrinks the rounding) picks each nearest window, whose
    distance is then recomputed directly in float64, so a copy reads exactly 0 (the expansion
    alone would read ~1e-3). Only neighbours tied to within float32 rounding of the squared
    distance may be swapped, which moves a distance by about that rounding.
    """
    reference = np.asarray(reference, np.float32)
    centre = reference.mean(axis=0)  # (L, K)
    q = (np.asarray(queries, np.float32) - centre).reshape(len(queries), -1)  # (Q, D)
    r = (reference - centre).reshape(len(reference), -1)  # (N, D)
    r_sq = np.einsum("nd,nd->n", r, r)  # (N,)
    chunk = max(1, chunk_bytes // (4 * len(r)))
    nearest = np.empty(len(q), np.int64)
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]  # (C, D)
        # |q|^2 is the same along a row, so the argmin needs only |r|^2 - 2 q.r.
        nearest[start:start + chunk] = np.argmin(r_sq[None] - 2 * block @ r.T, axis=1)
    diff = q.astype(np.float64) - r[nearest].astype(np.float64)  # (Q, D)
    return np.sqrt(np.einsum("qd,qd->q", diff, diff))


def _subset(windows, rng, max_queries):
    if len(windows) <= max_queries:
        return windows
    return windows[np.sort(rng.choice(len(windows), max_queries, replace=False))]


def memorisation_check(train, fake, held_out, seed=0, max_queries=MAX_QUERIES):
    """The memorisation check of `fake` against `train`, with `held_out` as the reference.

    Args:
        train: (N, L, K) the windows the model trained on, [0, 1].
        fake: (M, L, K) generated windows, [0, 1].
        held_out: (H, L, K) real windows the model never trained on, in the training windows'
            units; fewer than MIN_HELD_OUT make the check not available, fewer than
            PERCENTILE_HELD_OUT compare with their nearest instead of their 1st percentile.
        seed: picks the random `max_queries` of a larger `fake` or `held_out`.
        max_queries: the most windows of each of `fake` and `held_out` scored.

    Returns:
        A JSON-serialisable dict: `available` True, `median_ratio`, `share_closer`,
        `reference_share` (share_closer's value for fresh windows), the two medians, the held-out
        threshold (`held_out_p1`), the window counts and `seconds`; or `not_available`'s with too
        few held-out windows.
    """
    train, fake, held_out = (np.asarray(x) for x in (train, fake, held_out))
    shapes = {x.shape[1:] for x in (train, fake, held_out)}
    if len(shapes) != 1 or train.ndim != 3:
        raise ValueError(f"train, fake and held_out must be (N, L, K) windows of one (L, K); got "
                         f"{train.shape}, {fake.shape} and {held_out.shape}.")
    if len(held_out) < MIN_HELD_OUT:
        return not_available(f"{len(held_out)} held-out windows, fewer than the {MIN_HELD_OUT} "
                             f"a median needs; hold out more (config.data.test_fraction).")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    fake, held_out = _subset(fake, rng, max_queries), _subset(held_out, rng, max_queries)
    fake_d, held_d = nearest_distances(fake, train), nearest_distances(held_out, train)
    few = len(held_d) < PERCENTILE_HELD_OUT
    threshold = float(held_d.min() if few else np.percentile(held_d, PERCENTILE))
    held_median = float(np.median(held_d))
    return {
        "available": True,
        "median_ratio": float(np.median(fake_d)) / held_median if held_median > 0 else None,
        "share_closer": float(np.mean(fake_d < threshold)),
        "reference_share": 1 / (len(held_d) + 1) if few else PERCENTILE / 100,
        "generated_median": float(np.median(fake_d)),
        "held_out_median": held_median,
        "held_out_p1": threshold,
        "num_train": len(train), "num_generated": len(fake), "num_held_out": len(held_out),
        "seconds": time.perf_counter() - start,
    }


def reference_check(train, fake, held_out, source, seed=0):
    """`memorisation_check` against `held_out` with `held_out`: source (what those windows are)
    when available; with no held_out, `not_available(source)` (source then says why)."""
    if held_out is None:
        return not_available(source)
    check = memorisation_check(train, fake, held_out, seed=seed)
    if check["available"]:
        check["held_out"] = source or "held-out windows"
    return check


def per_class_memorisation(train, fake, fake_labels, held_out, held_out_labels, class_names,
                           seed=0):
    """{class name: `memorisation_check` of the windows asked for that class against the held-out
    windows of that class}, for every class with generated windows; `train` holds every class's
    training windows (a copy of another class's window is a copy too)."""
    fake, held_out = np.asarray(fake), np.asarray(held_out)
    fake_labels, held_out_labels = np.asarray(fake_labels), np.asarray(held_out_labels)
    return {name: memorisation_check(train, fake[fake_labels == c],
                                     held_out[held_out_labels == c], seed=seed)
            for c, name in enumerate(class_names) if np.any(fake_labels == c)}


def not_available(reason):
    """The check's entry when no held-out reference exists: `available` False and why."""
    return {"available": False, "reason": reason}


def describe(result):
    """One line for the command line: the two numbers and their reference, or why they are
    missing; a second with each class's median ratio where `result` has `per_class`."""
    if not result["available"]:
        return f"memorisation  not available: {result['reason']}"
    where = result.get("held_out", "held-out windows")
    share = result.get("reference_share", PERCENTILE / 100)
    line = (f"memorisation  median distance to the nearest training window, generated / "
            f"held-out {_ratio(result)}; {100 * result['share_closer']:.1f}% of generated windows "
            f"closer than the held-out {_threshold_name(result)} (reference: {where}; ~1.0 and "
            f"~{100 * share:.1f}% when not copying)")
    if "per_class" in result:
        line += "\nmemorisation  per class (median ratio, share closer): " + ", ".join(
            f"{name} {_ratio(c)} {100 * c['share_closer']:.1f}%" if c["available"] else
            f"{name} not available" for name, c in result["per_class"].items())
    return line


def _ratio(result):
    return "undefined" if result["median_ratio"] is None else f"{result['median_ratio']:.3f}"


def _threshold_name(result):
    return "nearest" if result["num_held_out"] < PERCENTILE_HELD_OUT else "1st percentile"
