#!/usr/bin/env bash
# Copy this checkout to every worker of a TPU VM and install it there with the TPU build of JAX.
#   TPU_NAME=stdiff ZONE=us-west4-a bash launch/tpu_setup.sh
set -euo pipefail
: "${TPU_NAME:=stdiff}"
: "${ZONE:=us-west4-a}"
cd "$(dirname "$0")/.."
jax_version=$(sed -n 's/^jax==//p' constraints.txt)  # the JAX version CI tests
tar czf /tmp/stdiff_jax.tgz --exclude=.venv --exclude=.ci-venv --exclude=workdirs --exclude=.git .
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="$1"; }
gcloud compute tpus tpu-vm scp /tmp/stdiff_jax.tgz "$TPU_NAME":~/ --zone="$ZONE" --worker=all
ssh_all "mkdir -p ~/stdiff_jax && tar xzf ~/stdiff_jax.tgz -C ~/stdiff_jax && cd ~/stdiff_jax \
  && python3 -m venv ~/venv && . ~/venv/bin/activate && pip install -q -U pip \
  && pip install -q -c constraints.txt -e '.[plots]' 'jax[tpu]==$jax_version' gcsfs \
  && python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.devices()[0].platform)'"
