#!/usr/bin/env bash
# One machine, all of its GPUs: the trainer shards every batch over the local devices by itself.
#   CONFIG=configs/etth.py bash launch/gpu_local.sh [--config.train.batch_size=256 ...]
# Several GPU machines under SLURM: `srun --ntasks-per-node=1 bash launch/gpu_local.sh`; each task
# then calls jax.distributed.initialize(), which reads the SLURM variables.
set -euo pipefail
: "${CONFIG:=configs/etth.py}"
cd "$(dirname "$0")/.."
if [ ! -d .venv ]; then
  jax_version=$(sed -n 's/^jax==//p' constraints.txt)  # the JAX version CI tests
  python3 -m venv .venv && . .venv/bin/activate && pip install -q -U pip \
    && pip install -q -c constraints.txt -e '.[plots]' "jax[cuda12]==$jax_version"
fi
. .venv/bin/activate
python -m stdiff_jax.main --config="$CONFIG" ${WORKDIR:+--workdir="$WORKDIR"} "$@"
