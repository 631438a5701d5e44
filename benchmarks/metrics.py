"""Cost of the metrics' repeats: R repeats at once against one repeat, on halves of real windows.

For each data set (ETTh and stocks at L = 24 by default), `real` and `fake` are two disjoint
random halves of the real [0, 1] windows (what a perfect generator would score). Per metric it
prints the seconds of R repeats computed together (`REPEATED[metric]` with R seeds) and of one
repeat (one seed), both timed on a second call so that compilation is left out, their ratio in
wall time and in process CPU time (less sensitive to other jobs on a shared machine), the
sequential-equivalent R x one repeat, and the first calls' extra time (compilation, mostly).
The row "all" is what `evaluate(real, fake, repeats=R)` costs once compiled (it makes exactly
these calls). Then the scores of the R repeats, and, with --noise, of `real` against uniform
noise of the same shape; with --gaussian, against a Gaussian in video space: the mean and full
covariance of the videos of the `fake` half (stdiff_jax/video.py's transform at the data set's
STFT settings), sampled and decoded, as many windows as `real`: what second moments alone score,
the starting point of a model with `model.prior_rank` (stdiff_jax/prior.py); with --components,
of mixtures of Gaussians, the starting point of `model.prior_components`.

    nice python benchmarks/metrics.py        # protocol settings, 5 repeats (from the repo root:
                                             # pip install -e . or PYTHONPATH=.)
    python benchmarks/metrics.py --datasets stocks --repeats 2 --metrics correlational
    python benchmarks/metrics.py --datasets mujoco,suite_regimes --no_costs --gaussian
    python benchmarks/metrics.py --datasets suite_regimes --no_costs --gaussian --components 1,10
"""
import argparse
import json
import os
import pathlib
import time

import numpy as np

from stdiff_jax import prior, video
from stdiff_jax.data import load_dataset
from stdiff_jax.models.sizes import stft_settings
from stdiff_jax.metrics import METRICS, REPEATED, evaluate
from stdiff_jax.metrics.evaluate import summarize

REPO = pathlib.Path(__file__).resolve().parents[1]


def timed(fn, *args):
    """`(wall seconds, process CPU seconds, result)` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def repeat_costs(name, real, fake, seeds):
    """Seconds of all repeats and of one, each timed on a second call so that compilation is
    left out, the first calls' extra wall seconds, and the scores of all repeats.

    The timed calls run back to back, so that a load changing on a shared machine moves both.
    """
    first_all, _, _ = timed(REPEATED[name], real, fake, seeds)
    first_one, _, _ = timed(REPEATED[name], real, fake, seeds[:1])
    all_wall, all_cpu, values = timed(REPEATED[name], real, fake, seeds)
    one_wall, one_cpu, _ = timed(REPEATED[name], real, fake, seeds[:1])
    return {"all": all_wall, "one": one_wall, "all_cpu": all_cpu, "one_cpu": one_cpu,
            "compile_all": first_all - all_wall, "compile_one": first_one - one_wall,
            "scores": summarize(values)}


def cost_table(costs, repeats):
    r = repeats
    lines = [f"| metric | {r} repeats (s) | 1 repeat (s) | ratio | CPU-time ratio | "
             f"{r} x 1 repeat (s) | first calls' extra, {r} / 1 repeats (s) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    rows = dict(costs, all={k: sum(c[k] for c in costs.values())
                            for k in ("all", "one", "all_cpu", "one_cpu", "compile_all",
                                      "compile_one")})
    for name, c in rows.items():
        lines.append(f"| {name} | {c['all']:.2f} | {c['one']:.2f} | {c['all'] / c['one']:.2f} | "
                     f"{c['all_cpu'] / c['one_cpu']:.2f} | {r * c['one']:.2f} | "
                     f"{c['compile_all']:.1f} / {c['compile_one']:.1f} |")
    return "\n".join(lines)


def score_table(title, scores):
    lines = [title, f"{'metric':<16}{'mean':>12}{'ci95':>12}  values"]
    for name, r in scores.items():
        ci95 = "-" if r["ci95"] is None else f"{r['ci95']:.4f}"
        values = " ".join(f"{v:.6f}" for v in r["values"])
        lines.append(f"{name:<16}{r['mean']:>12.4f}{ci95:>12}  {values}")
    return "\n".join(lines)


def halves(dataset, seq_len, data_dir, seed):
    windows = load_dataset(dataset, seq_len, data_dir=data_dir).unit_windows
    order = np.random.default_rng(seed).permutation(len(windows))
    half = len(windows) // 2
    print(f"\n## {dataset} L={seq_len}: {len(windows)} windows, K={windows.shape[-1]}; real and "
          f"fake are disjoint halves of {half} windows", flush=True)
    return windows[order[:half]], windows[order[half:2 * half]]


def gaussian_windows(fit_windows, num, seed, components=1):
    """`num` windows decoded from draws of the Gaussian of the videos of `fit_windows` ([0, 1]),
    or of the mixture of `components` Gaussians the model's prior would fit
    (`prior.fit`: k-means clusters, a Gaussian each), every direction kept."""
    length = fit_windows.shape[1]
    n_fft, hop = stft_settings(length)

    def to_video(x):
        return video.series_to_video(2 * x - 1, n_fft, hop)

    shape = np.asarray(to_video(fit_windows[:1])).shape[1:]
    dim = int(np.prod(shape))
    rank = min(dim, len(fit_windows))
    g = prior.as_mixture(prior.fit(fit_windows, to_video, rank, components, seed=seed))
    rng = np.random.default_rng(seed)
    weights = np.exp(g.log_weights) / np.exp(g.log_weights).sum()
    which = rng.choice(components, num, p=weights) if components > 1 else np.zeros(num, int)
    draws = np.empty((num, dim))
    for c in range(components):
        rows = which == c
        n, part = int(rows.sum()), g.component(c)
        draws[rows] = part.mean + (rng.standard_normal((n, rank)) * np.sqrt(part.variances)
                                   ) @ part.basis.T
        if part.residual:  # the directions outside the basis
            noise = rng.standard_normal((n, dim))
            draws[rows] += np.sqrt(part.residual) * (noise - (noise @ part.basis) @ part.basis.T)
    series = video.video_to_series(draws.reshape(num, *shape).astype(np.float32), n_fft, hop,
                                   length)
    return np.clip((np.asarray(series) + 1) / 2, 0, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="etth,stocks")
    parser.add_argument("--seq_len", type=int, default=24)
    parser.add_argument("--data_dir", default=os.environ.get(
        "STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", action="store_true", help="also score real against noise")
    parser.add_argument("--gaussian", action="store_true",
                        help="also score real against a Gaussian in video space")
    parser.add_argument("--components", default="1",
                        help="with --gaussian: mixtures of these many Gaussians, e.g. 1,3,10")
    parser.add_argument("--no_costs", action="store_true",
                        help="score the halves once, without timing the repeats")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()

    names = tuple(args.metrics.split(","))
    seeds = [args.seed + r for r in range(args.repeats)]
    out = {}
    for dataset in args.datasets.split(","):
        real, fake = halves(dataset, args.seq_len, args.data_dir, args.seed)
        if args.no_costs:
            out[dataset] = {"halves": evaluate(real, fake, repeats=args.repeats, seed=args.seed,
                                               metrics=names)}
            print(score_table("\nreal vs held-out real", out[dataset]["halves"]), flush=True)
        else:
            costs = {name: repeat_costs(name, real, fake, seeds) for name in names}
            print(cost_table(costs, args.repeats), flush=True)
            print(score_table("\nreal vs held-out real",
                              {n: c["scores"] for n, c in costs.items()}), flush=True)
            out[dataset] = {"costs": costs}
        if args.noise:
            noise = np.random.default_rng(args.seed).uniform(size=real.shape).astype(np.float32)
            out[dataset]["noise"] = evaluate(real, noise, repeats=args.repeats, seed=args.seed,
                                             metrics=names)
            print(score_table("\nreal vs uniform noise", out[dataset]["noise"]), flush=True)
        for components in map(int, args.components.split(",")) if args.gaussian else ():
            start = time.process_time()
            gauss = gaussian_windows(fake, len(real), args.seed, components)
            key = "gaussian" if components == 1 else f"mixture_{components}"
            out[dataset][key] = evaluate(real, gauss, repeats=args.repeats, seed=args.seed,
                                         metrics=names)
            what = ("a Gaussian" if components == 1 else
                    f"a mixture of {components} Gaussians (the prior's k-means clusters)")
            print(score_table(f"\nreal vs {what} in video space (fitted on the other half; "
                              f"{time.process_time() - start:.0f} CPU s with scoring)",
                              out[dataset][key]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
