#!/usr/bin/env bash
# A/B of two server configurations in one run (BENCHMARKS.md, "--batch-overhead-tokens"):
# starts the same rerankd binary twice with extra flags A and B on the comparison's
# cross-encoder speed model, then runs `rerankd bench` against each in turn, interleaved,
# for each client count and round (the same seeded requests for A and B within a round),
# and prints pairs/s, p99, pairs per batch and padding efficiency per run.
#
# Usage: scripts/bench/ab.sh "FLAGS A" "FLAGS B"
#   e.g. scripts/bench/ab.sh "--batch-overhead-tokens 0" ""
# Environment: RERANKD_BENCH_BIN (default target/release/rerankd, built if missing),
# RERANKD_AB_CLIENTS (default "1 4 16"), RERANKD_AB_ROUNDS (3), RERANKD_AB_DOCUMENTS (10),
# RERANKD_AB_DURATION (15), RERANKD_BENCH_OUT (default /tmp/rerankd-bench-results; runs go
# to its ab/ folder). Needs scripts/bench/compare.sh's model (made on its first run, or by
# scripts/bench/make-model.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
A="${1-}" B="${2-}"
BIN="${RERANKD_BENCH_BIN:-$ROOT/target/release/rerankd}"
PROJECT_VENV="${RERANKD_VENV:-$(bash scripts/setup-venv.sh | tail -n 1)}"
[[ -x "$BIN" ]] || (source scripts/env.sh && cargo build --release --bin rerankd)
MODEL="$(bash scripts/bench/make-model.sh "$PROJECT_VENV" | tail -n 1)/ts"
OUT="${RERANKD_BENCH_OUT:-/tmp/rerankd-bench-results}/ab"
rm -rf "$OUT" && mkdir -p "$OUT"

start() { # NAME FLAGS: starts a server on a free port; prints its pid and port
  local name="$1" flags="$2"
  # shellcheck disable=SC2086
  RERANKD_LOG_FORMAT=json "$BIN" serve --model "$MODEL" --addr 127.0.0.1:0 --http-addr off $flags >"$OUT/$name.log" 2>&1 &
  echo $!
}
port_of() { # NAME: waits until the server is warm; prints its port
  until grep -q "warmed up" "$OUT/$1.log"; do
    grep -q '"level":"ERROR"' "$OUT/$1.log" && { echo "server $1 failed: $OUT/$1.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -o '"addr":"[0-9.]*:[0-9]*"' "$OUT/$1.log" | head -n 1 | sed 's/.*://; s/"//'
}
PA="$(start a "$A")"
PB="$(start b "$B")"
trap 'kill $PA $PB 2>/dev/null || true' EXIT
PORT_A="$(port_of a)" PORT_B="$(port_of b)"
echo "A: $A (port $PORT_A)   B: $B (port $PORT_B)"
for round in $(seq 1 "${RERANKD_AB_ROUNDS:-3}"); do
  for clients in ${RERANKD_AB_CLIENTS:-1 4 16}; do
    for v in a b; do
      port="$PORT_A"; [[ "$v" == b ]] && port="$PORT_B"
      json="$OUT/$v-c$clients-r$round.json"
      "$BIN" bench --addr "http://127.0.0.1:$port" --clients "$clients" \
        --documents "${RERANKD_AB_DOCUMENTS:-10}" --lengths long-tail \
        --duration "${RERANKD_AB_DURATION:-15}" --warmup 2 --seed "$round" \
        --json "$json" --plot "${json%.json}.svg" --no-progress >/dev/null
      python3 - "$json" "$round" "$clients" "$v" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"round {sys.argv[2]} clients {sys.argv[3]:>3} {sys.argv[4].upper()}: {s['pairs_per_second']:6.2f} pairs/s, "
      f"p99 {s['latency_ms']['p99']:7.0f} ms, {s['mean_pairs_per_batch']:.2f} pairs/batch, "
      f"padding eff. {s['padding_efficiency']:.3f}", flush=True)
PY
    done
  done
done
