#!/usr/bin/env bash
# Latency under contention (BENCHMARKS.md, "Latency under contention"): starts `rerankd
# serve` on a free port of 127.0.0.1, runs `rerankd-contention` against it (the bench crate's third
# binary: a small query alone, large requests alone, then both at once), then sends SIGTERM and
# waits for the server to exit. Writes contention.json, contention.txt (the table) and server.log
# under the output folder.
#
# Usage: scripts/bench/contention.sh [--ci] [--model DIR] [--out DIR] [TOOL FLAGS...] [-- TOOL FLAGS...]
#   default   the head-of-line case on the default model (minilm-pair): 30 calls of 8 documents alone,
#             2 clients of 400 long-tail documents alone for 30 s, then both at once for 60 s
#             (after 5 s of warm-up); into /tmp/rerankd-contention/full
#   --ci      a smoke run on the tiny-bert test model (`rerankd-contention --ci`: 10 calls alone,
#             5 s phases, 64 documents per large request); into /tmp/rerankd-contention/ci
# Every other argument, and everything after `--`, goes to rerankd-contention (see
# `rerankd-contention --help`), e.g. `--small-priority -10` or `--mixed-secs 120`;
# RERANKD_CONTENTION_SERVER_ARGS (space-separated) go to `rerankd serve`.
#
# Exits non-zero when the run fails (a call failed, or a figure could not be measured) or the
# server does not exit 0 after SIGTERM; never on the issue's targets (p99 slowdown <= 6, large
# throughput ratio >= 0.95), which the table prints beside the figures.
# Owns: building, starting and stopping the server around the run. Must never: measure or judge
# anything itself (rerankd-contention does), or leave the server running when it exits.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CI=0
MODEL=""
OUT=""
TOOL_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ci) CI=1 ;;
    --model) MODEL="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --) shift; TOOL_ARGS+=("$@"); break ;;
    *) TOOL_ARGS+=("$1") ;;
  esac
  shift
done

source scripts/env.sh
MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
if [[ $CI == 1 ]]; then
  PROFILE=(--ci)
  MODEL="${MODEL:-$MODELS/tiny-bert}"
  OUT="${OUT:-/tmp/rerankd-contention/ci}"
else
  PROFILE=()
  MODEL="${MODEL:-$MODELS/minilm-pair}"
  OUT="${OUT:-/tmp/rerankd-contention/full}"
fi
mkdir -p "$OUT"

cargo build --release --quiet -p rerankd -p rerankd-bench --bin rerankd --bin rerankd-contention
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"

# shellcheck source=scripts/bench/server.sh
source scripts/bench/server.sh
read -r -a SERVER_ARGS <<<"${RERANKD_CONTENTION_SERVER_ARGS:-}"
bench_server_start contention "$BIN_DIR" "$MODEL" "$OUT" "${SERVER_ARGS[@]}"

RUN_STATUS=0
# RUST_BACKTRACE=0: a failed run ends with its reasons, not with the frames of main.
RUST_BACKTRACE=0 "$BIN_DIR/rerankd-contention" --addr "http://$ADDR" --json "$OUT/contention.json" \
  "${PROFILE[@]}" "${TOOL_ARGS[@]}" | tee "$OUT/contention.txt" || RUN_STATUS=$?

bench_server_stop contention "$OUT"
if [[ $RUN_STATUS != 0 ]]; then
  echo "contention.sh: the run failed (see $OUT/contention.txt and $OUT/contention.json)" >&2
  exit 1
fi
echo "contention.sh: done; results in $OUT (the targets are reported, not judged)" >&2
