#!/usr/bin/env bash
# The A/B of the validation split (issue 27): the random stride-1 split of OLD_TREE against the
# block split of NEW_TREE, stocks cpu, training seeds 0 and 1, one run at a time; then
#   python benchmarks/valsplit_ab.py OUT_DIR
# prints the table of docs/ablations.md.
#   bash benchmarks/valsplit_ab.sh OLD_TREE NEW_TREE OUT_DIR
set -u
old_tree=$1 new_tree=$2 out=$3
mkdir -p "$out"
export STDIFF_DATA_DIR=${STDIFF_DATA_DIR:-/work/shared/data} JAX_PLATFORMS=cpu
for seed in 0 1; do
  for side in old new; do
    tree=$old_tree; [ "$side" = new ] && tree=$new_tree
    run=valsplit_${side}_s${seed}
    echo "=== $run ($tree) $(date)"
    (cd "$tree" && /usr/bin/time -f "user %U sys %S wall %e" python -m stdiff_jax.main \
        --config=configs/stocks.py:cpu --config.train.seed=$seed --workdir="$out/$run") \
        > "$out/$run.log" 2>&1
    echo "rc $? $(date)"; tail -1 "$out/$run.log"
  done
done
