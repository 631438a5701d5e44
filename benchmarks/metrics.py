"""Time and values of `evaluate(real, fake, repeats=5)` on ETTh windows (L = 24 by default).

`real` and `fake` are two disjoint random halves of the real [0, 1] windows (what a perfect
generator would score), then the same `real` against uniform noise of the same shape. Each
metric's seconds include its jit compilations.

    nice python benchmarks/metrics.py        # protocol settings, 5 repeats (from the repo root:
                                             # pip install -e . or PYTHONPATH=.)
    python benchmarks/metrics.py --repeats 2 --metrics correlational,discriminative
"""
import argparse
import json
import os
import pathlib
import time

import numpy as np

from stdiff_jax.data import load_dataset
from stdiff_jax.metrics import METRICS, evaluate

REPO = pathlib.Path(__file__).resolve().parents[1]


def table(title, results):
    lines = [title, f"{'metric':<16}{'mean':>12}{'ci95':>12}{'seconds':>10}"]
    for name, r in results.items():
        ci95 = "-" if r["ci95"] is None else f"{r['ci95']:.4f}"
        lines.append(f"{name:<16}{r['mean']:>12.4f}{ci95:>12}{r['seconds']:>10.1f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="etth")
    parser.add_argument("--seq_len", type=int, default=24)
    parser.add_argument("--data_dir", default=os.environ.get(
        "STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write both results to this file")
    args = parser.parse_args()

    windows = load_dataset(args.dataset, args.seq_len, data_dir=args.data_dir).unit_windows
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(windows))
    half = len(windows) // 2
    real, fake = windows[order[:half]], windows[order[half:2 * half]]
    noise = rng.uniform(size=real.shape).astype(np.float32)
    print(f"{args.dataset} L={args.seq_len}: {len(windows)} windows, K={windows.shape[-1]}; "
          f"real and fake are disjoint halves of {half} windows; {args.repeats} repeats")

    names = tuple(args.metrics.split(","))
    out = {}
    for title, other in (("real vs held-out real", fake), ("real vs uniform noise", noise)):
        start = time.perf_counter()

        def progress(name, repeat, value, start=start):
            print(f"  {title}: {name} repeat {repeat + 1}: {value:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)

        out[title] = evaluate(real, other, repeats=args.repeats, seed=args.seed, metrics=names,
                              progress=progress)
        print(table(f"\n{title}: {time.perf_counter() - start:.1f} s", out[title]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
