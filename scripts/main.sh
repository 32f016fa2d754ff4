#!/usr/bin/env bash
# The main job end to end on the shared data: install, fine-tune MiniLM-L6 with LoRA on Financial
# PhraseBank, evaluate the saved run on its test split, and print where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="runs/finance_sentiment-lora-main"
rm -rf "$out"
mmsft train finance_sentiment --adapter lora --output "$out"
mmsft eval "$out"
echo "report: $out/report.md"
