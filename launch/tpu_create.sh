#!/usr/bin/env bash
# Create a Cloud TPU VM: a single host (v5litepod-8, 8 chips) or a pod slice (e.g. v4-32, 4 hosts).
#   TPU_NAME=stdiff ZONE=us-central2-b ACCELERATOR=v4-32 bash launch/tpu_create.sh
set -euo pipefail
: "${TPU_NAME:=stdiff}"
: "${ZONE:=us-west4-a}"
: "${ACCELERATOR:=v5litepod-8}"
: "${RUNTIME:=v2-alpha-tpuv5-lite}"  # v4: tpu-ubuntu2204-base; v5p: v2-alpha-tpuv5
gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
  --accelerator-type="$ACCELERATOR" --version="$RUNTIME" ${PROJECT:+--project="$PROJECT"}
gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" --format='value(state,networkEndpoints)'
