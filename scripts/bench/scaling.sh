#!/usr/bin/env bash
# Scaling sweep (BENCHMARKS.md, "Scaling"): throughput and p99 latency of rerankd against
# concurrent clients (1..256, 10 long-tail documents per request) and against documents per
# request (10..5000, one client), measured with `rerankd bench` on the default model
# (all-MiniLM-L6 in pair mode, --dtype auto). Writes scaling.md, scaling.json and scaling.svg
# (and each point's bench JSON/SVG under points/) to $RERANKD_BENCH_OUT/scaling
# (default /tmp/rerankd-bench-results/scaling). The machine should be otherwise idle.
#
# Environment: RERANKD_BENCH_BIN (default: cargo build --release, target/release/rerankd),
# and RERANKD_SCALING_* (scripts/bench/scaling.py says which).
# Takes about 11 minutes on 2 cores with the defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${RERANKD_BENCH_OUT:-/tmp/rerankd-bench-results}/scaling"
mkdir -p "$OUT"
MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
if [[ -n "${RERANKD_BENCH_BIN:-}" ]]; then
  BIN="$RERANKD_BENCH_BIN"
else
  (source scripts/env.sh && cargo build --release --bin rerankd)
  BIN="$ROOT/target/release/rerankd"
fi
exec python3 scripts/bench/scaling.py "$BIN" "$MODELS/minilm-pair" "$OUT"
