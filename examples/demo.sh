#!/usr/bin/env bash
# `make demo`: LoRA on the embedded SmolLM2 with the marketing-copy example, then base and tuned answers side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

tunesmith train examples/marketing-copy/config.yaml --output-dir runs
run=$(ls -td runs/marketing-copy-* | head -n 1)

echo
echo "Three new products, answered by the base model and by the tuned one:"
tunesmith generate "$run" --input examples/marketing-copy/demo-prompts.csv --compare-base --max-new-tokens 80

echo
echo "The run lives in $run (config.yaml, run.json, metrics.jsonl, model/)."
echo "Try: tunesmith generate $run --prompt \$'Product: Glowmate lamp (desk lamp)\\nPromotion: none\\nAudience: students\\nWrite the ad.'"
echo "demo wall time (after set-up): $(( $(date +%s) - start ))s"
