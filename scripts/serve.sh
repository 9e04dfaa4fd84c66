#!/usr/bin/env bash
# Builds rerankd and serves the default model (all-MiniLM-L6-v2 in pair mode)
# on ${RERANKD_ADDR:-0.0.0.0:50051}. On a fresh machine it first creates the
# project's venv (libtorch 2.11.0 from PyPI) and exports the models, both
# cached under ~/.cache/rerankd. Extra arguments go to `rerankd serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
cargo build --release --bin rerankd
exec cargo run --release --quiet --bin rerankd -- serve --model "${RERANKD_MODEL:-$MODELS/minilm-pair}" "$@"
