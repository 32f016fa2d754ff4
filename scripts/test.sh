#!/usr/bin/env bash
# Install and run the whole test suite (unit tests on tiny models + integration tests on the real
# pretrained models and the shared data).  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m pytest -q tests "$@"
