#!/usr/bin/env bash
# Run the main job on every worker of a TPU VM; all hosts join one JAX runtime (--distributed).
#   TPU_NAME=stdiff ZONE=us-west4-a CONFIG=configs/etth.py WORKDIR=gs://BUCKET/stdiff/etth_L24 \
#     bash launch/tpu_run.sh [--config.train.num_steps=20000 ...]
# Rerunning the same command resumes from the newest checkpoint in WORKDIR.
set -euo pipefail
: "${TPU_NAME:=stdiff}"
: "${ZONE:=us-west4-a}"
: "${CONFIG:=configs/etth.py}"
: "${WORKDIR:?set WORKDIR, e.g. gs://BUCKET/stdiff/etth_L24 (shared by all hosts)}"
extra=$(printf " %q" "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="\
  cd ~/stdiff_jax && . ~/venv/bin/activate && \
  python -m stdiff_jax.main --config=$CONFIG --workdir=$WORKDIR --distributed$extra \
  2>&1 | tee -a ~/stdiff_run.log"
