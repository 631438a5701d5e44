"""TS2Vec's training cost (Context-FID's encoders) by window length, in process CPU seconds.

For each L, trains R encoders at once on ETTh's [0, 1] windows of that length
(`ts2vec.fit_repeats`, as Context-FID's R repeats do) for a few iterations, twice: the first
call's extra CPU over the second is compilation; the second's CPU per iteration, times the
protocol's iterations (`ts2vec.default_iterations`: 600 on these data), is what one Context-FID
evaluation spends training its encoders. Encoding the windows comes on top and is not measured
here. Process CPU, not wall time: it moves less with other jobs on a shared machine.

    python benchmarks/ts2vec_cost.py                      # L = 24, 64, 128, 256; 5 repeats
    python benchmarks/ts2vec_cost.py --lengths 256 --iterations 20
"""
import argparse
import os
import pathlib

import jax

from metrics import timed  # benchmarks/metrics.py: (wall, process CPU, result) of one call
from stdiff_jax.data import load_dataset
from stdiff_jax.metrics import ts2vec

REPO = pathlib.Path(__file__).resolve().parents[1]


def cpu_seconds(data, seeds, iterations):
    """Process CPU of training `len(seeds)` encoders for `iterations` on `data`, to the end."""
    return timed(lambda: jax.block_until_ready(
        ts2vec.fit_repeats(data, seeds, iterations=iterations)))[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="24,64,128,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--data_dir", default=os.environ.get(
        "STDIFF_DATA_DIR", str(REPO.parent / "shared" / "data")))
    args = parser.parse_args()

    seeds = list(range(args.repeats))
    print(f"| L | windows | compile (CPU s) | CPU s an iteration, {args.repeats} repeats | "
          f"protocol iterations | their CPU s |\n| --- | --- | --- | --- | --- | --- |", flush=True)
    for length in map(int, args.lengths.split(",")):
        data = load_dataset("etth", length, data_dir=args.data_dir).unit_windows
        first = cpu_seconds(data, seeds, args.iterations)
        second = cpu_seconds(data, seeds, args.iterations)
        per_iteration = second / args.iterations
        protocol = ts2vec.default_iterations(data.size)
        print(f"| {length} | {len(data):,} | {first - second:.1f} | {per_iteration:.3f} | "
              f"{protocol} | {protocol * per_iteration:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
