#!/usr/bin/env bash
# Batcher benchmark on this machine: raw libtorch at fixed batch sizes vs the
# server over gRPC with the adaptive batcher, in one run. Uses the default
# model unless RERANKD_BENCH_MODEL names another model directory;
# RERANKD_BENCH_DTYPE=bf16 benchmarks bf16.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
export RERANKD_BENCH_MODEL="${RERANKD_BENCH_MODEL:-$MODELS/minilm-pair}"
exec cargo bench --bench batcher "$@"
