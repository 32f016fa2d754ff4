#!/usr/bin/env bash
# Run here, on the CPU machine: fill gpu_bundle/PART (git-ignored) with what the GPU machine lacks for
# `scripts/gpu_check.sh PART`: cp312 wheels, the zoo weights (MiniLM-L6 in fp16), the task data.
# Usage: bash scripts/gpu_bundle.sh text|vision [--out DIR] [--skip-wheels]   (docs/gpu.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python benchmarks/gpu_bundle.py "$@"
