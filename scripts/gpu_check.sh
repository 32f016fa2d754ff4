#!/usr/bin/env bash
# Run there, on the GPU machine, with gpu_bundle/PART carried along: install the bundle's wheels
# offline, probe versions and imports, train the part's checks in bf16 and write
# benchmarks/results/gpu.{md,json}.  Under 8 minutes a part (docs/gpu.md).
# Usage: bash scripts/gpu_check.sh text|vision [--dry-run] [--cpu-smoke] [--copy-to DIR] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
command -v "$py" >/dev/null 2>&1 || py=python
exec "$py" benchmarks/gpu.py "$@"
