#!/usr/bin/env bash
# Side-by-side comparison of rerankd with what it replaces, in ONE run, on this machine:
#
#   1. raw TorchScript forward (torch.jit.load of the same model.pt, libtorch 2.11 as the server),
#      length-sorted static batches 1..128: the best one is the "raw best static" baseline;
#   2. the Python path: sentence-transformers CrossEncoder.predict and FlagEmbedding's
#      FlagReranker.compute_score (batch 8/32/128; FlagReranker's default = "Python default"),
#      plus FlagReranker called once per request, as a naive Python service would;
#   3. Infinity (infinity-emb): torch engine fp32 and bf16, optimum engine (ONNX Runtime);
#   4. rerankd: default (adaptive batcher, --dtype auto), --dtype fp32, --dtype bf16, and static
#      batching (--max-batch-pairs B --min-padding-efficiency 0) for B in 8/16/32/64;
#   5. ranking fidelity of bf16 vs fp32 on real weights (minilm-pair), served by rerankd.
#
# Every contender runs the very same weights: a cross-encoder of ms-marco-MiniLM-L-6-v2's exact
# shape (BERT, 6 layers, hidden 384) with random weights (seed 0) and the real all-MiniLM tokenizer,
# made once as a Hugging Face folder and exported from it by scripts/export/export_model.py (and to
# ONNX for Infinity's optimum engine). Every server is driven by the same load driver
# (scripts/bench/load.py: N concurrent closed-loop clients, same requests) over the same seeded
# long-tail workload (scripts/bench/workload.py). Rounds are interleaved (A B C ... A B C ...) and
# the best round per contender is kept; the table lists every round.
#
# Prints one table (absolute numbers, ratios with the targets, met/missed) and writes it as
# results.json + results.md (and every process's log under logs/) to $RERANKD_BENCH_OUT.
# Nothing is written into the repository. A contender that cannot be installed or run gets a
# line that says why, and the run goes on.
#
# Usage: scripts/bench/compare.sh
#
# Environment (all optional):
#   RERANKD_BENCH_OUT           results folder (default /tmp/rerankd-bench-results)
#   RERANKD_BENCH_BIN           rerankd binary to run (default: cargo build --release, then
#                               target/release/rerankd)
#   RERANKD_BENCH_PAIRS         pairs in the workload (default 512)
#   RERANKD_BENCH_SEED          workload seed (default 0)
#   RERANKD_BENCH_CLIENTS       concurrent clients of the load driver (default 16)
#   RERANKD_BENCH_ROUNDS        interleaved rounds per contender (default 2)
#   RERANKD_BENCH_PASSES        timed passes over the workload per server run (default 1)
#   RERANKD_BENCH_THREADS       torch threads of the in-process contenders (default: all cores)
#   RERANKD_BENCH_RAW_SIZES     raw static batch sizes (default 1,2,4,8,16,32,64,128)
#   RERANKD_BENCH_PY_SIZES      CrossEncoder / FlagReranker batch sizes (default 8,32,128)
#   RERANKD_BENCH_STATIC_SIZES  rerankd static batch sizes (default 8,16,32,64)
#   RERANKD_BENCH_BF16_PASSES   on a CPU without native bf16 (no avx512_bf16/AMX) the bf16 variants
#                               are emulated and several times slower: they run this fraction of
#                               one pass (default 0.25), in one round only
#   RERANKD_BENCH_FIDELITY_GROUPS / _DOCS  query groups / documents per group of the bf16 check
#                               (default 48 / 12)
#   RERANKD_BENCH_ONLY          comma-separated groups or contender ids to run: rerankd, raw, st,
#                               flag, infinity, fidelity, or ids such as rerankd-static-16
#   RERANKD_BENCH_SKIP          the same, to leave out
#   RERANKD_BENCH_UNIT_TIMEOUT  seconds one contender may take per round (default 900)
#   RERANKD_BENCH_QUIET_WAIT    before each contender, wait up to this many seconds (default 120)
#                               while other processes use 15% or more of the CPU; the table marks
#                               rows measured while others used 5% or more
#   RERANKD_BENCH_NO_INSTALL=1  do not create the FlagEmbedding / Infinity venvs (their lines say so)
#   RERANKD_BENCH_RETRY_INSTALL=1  retry a venv install that failed before (failures are remembered)
#   RERANKD_BENCH_CACHE         cache folder (default ${RERANKD_CACHE:-~/.cache/rerankd}/bench)
#
# Caches (keyed by version; a second run skips them): the venvs of the load driver, FlagEmbedding
# and Infinity (scripts/bench/setup-venvs.sh; PyPI only, torch 2.11.0 as the project's), the model
# (scripts/bench/make-model.sh), its ONNX export, the workload file, the gRPC stubs.
# First run: ~25 min of installs (three torch wheels' worth of downloads) and ~5 min of exports.
# The comparison itself takes about 20-25 min on 2 cores with the defaults.
# The machine should be otherwise idle: the table shows the load average at start and end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
T0=$SECONDS
export RERANKD_BENCH_CACHE="${RERANKD_BENCH_CACHE:-${RERANKD_CACHE:-$HOME/.cache/rerankd}/bench}"
OUT="${RERANKD_BENCH_OUT:-/tmp/rerankd-bench-results}"
mkdir -p "$RERANKD_BENCH_CACHE" "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

say() { echo "bench-compare: $*" >&2; }
step() {
  local t=$SECONDS
  "$@"
  say "  ($((SECONDS - t))s)"
}

# --- venvs -----------------------------------------------------------------------------------------
say "project venv (torch, transformers, sentence-transformers)"
PROJECT_VENV="${RERANKD_VENV:-$(bash scripts/setup-venv.sh | tail -n 1)}"
export BENCH_PROJECT_PY="$PROJECT_VENV/bin/python"

say "load-driver venv (grpcio, aiohttp)"
DRIVER_VENV="$(bash scripts/bench/setup-venvs.sh driver | tail -n 1)"
export BENCH_DRIVER_PY="$DRIVER_VENV/bin/python"

optional_venv() { # NAME VAR_PREFIX
  local name="$1" var="$2" path err
  if [[ "${RERANKD_BENCH_NO_INSTALL:-0}" == 1 ]]; then
    export "${var}_ERROR=not installed (RERANKD_BENCH_NO_INSTALL=1)"
    return
  fi
  say "$name venv"
  if path="$(bash scripts/bench/setup-venvs.sh "$name" 2>"$OUT/setup-$name.err" | tail -n 1)" && [[ -n "$path" ]]; then
    export "${var}_PY=$path/bin/python"
  else
    err="$(tail -n 1 "$OUT/setup-$name.err")"
    export "${var}_ERROR=${err#setup-venvs: }"
    say "  $name unavailable: ${err}"
  fi
}
optional_venv flag BENCH_FLAG
optional_venv infinity BENCH_INFINITY

# --- server binary ---------------------------------------------------------------------------------
if [[ -n "${RERANKD_BENCH_BIN:-}" ]]; then
  export BENCH_BIN="$RERANKD_BENCH_BIN"
else
  say "building the server (cargo build --release --bin rerankd)"
  if (source scripts/env.sh && cargo build --release --bin rerankd >"$OUT/cargo-build.log" 2>&1); then
    export BENCH_BIN="$ROOT/target/release/rerankd"
  else
    BENCH_BIN_ERROR="cargo build failed: $(tail -n 1 "$OUT/cargo-build.log")"
    export BENCH_BIN_ERROR
    say "  $BENCH_BIN_ERROR"
  fi
fi
if [[ -n "${BENCH_BIN:-}" && ! -x "$BENCH_BIN" ]]; then
  export BENCH_BIN_ERROR="$BENCH_BIN is not an executable"
  unset BENCH_BIN
fi

# --- models ----------------------------------------------------------------------------------------
say "speed model (random-init ms-marco-MiniLM-L-6 shape: HF folder + TorchScript)"
MODEL_DIR="$(bash scripts/bench/make-model.sh "$PROJECT_VENV" | tail -n 1)"
export BENCH_MODEL_DIR="$MODEL_DIR"

say "real-weights model for the bf16 check (minilm-pair, scripts/setup-models.sh)"
if MODELS="$(RERANKD_VENV="$PROJECT_VENV" bash scripts/setup-models.sh 2>"$OUT/setup-models.err" | tail -n 1)" &&
  [[ -f "$MODELS/minilm-pair/model.pt" ]]; then
  export BENCH_FIDELITY_MODEL="$MODELS/minilm-pair"
else
  BENCH_FIDELITY_ERROR="scripts/setup-models.sh failed: $(tail -n 1 "$OUT/setup-models.err")"
  export BENCH_FIDELITY_ERROR
fi

if [[ -n "${BENCH_INFINITY_PY:-}" ]]; then
  ONNX_DIR="$MODEL_DIR/onnx"
  if [[ ! -f "$ONNX_DIR/export.json" && ! -f "$ONNX_DIR.failed" ]]; then
    say "ONNX export of the HF folder for Infinity's optimum engine"
    if "$BENCH_INFINITY_PY" scripts/bench/export_onnx.py "$MODEL_DIR/hf" "$ONNX_DIR" >"$OUT/export-onnx.out" 2>"$OUT/export-onnx.err"; then
      tail -n 1 "$OUT/export-onnx.out" >"$ONNX_DIR/export.json"
    else
      tail -n 1 "$OUT/export-onnx.err" >"$ONNX_DIR.failed"
    fi
  fi
  if [[ -f "$ONNX_DIR/export.json" ]]; then
    BENCH_ONNX_METHOD="$(cat "$ONNX_DIR/export.json")"
    export BENCH_ONNX_DIR="$ONNX_DIR" BENCH_ONNX_METHOD
  else
    BENCH_ONNX_ERROR="ONNX export failed: $(cat "$ONNX_DIR.failed" 2>/dev/null || true)"
    export BENCH_ONNX_ERROR
  fi
else
  export BENCH_ONNX_ERROR="needs the Infinity venv (${BENCH_INFINITY_ERROR:-})"
fi

# --- workload --------------------------------------------------------------------------------------
PAIRS="${RERANKD_BENCH_PAIRS:-512}"
SEED="${RERANKD_BENCH_SEED:-0}"
FG="${RERANKD_BENCH_FIDELITY_GROUPS:-48}"
FD="${RERANKD_BENCH_FIDELITY_DOCS:-12}"
WL_KEY="$(sha256sum scripts/bench/workload.py "$MODEL_DIR/ts/tokenizer.json" | sha256sum | cut -c1-10)"
mkdir -p "$RERANKD_BENCH_CACHE/workloads"
export BENCH_WORKLOAD="$RERANKD_BENCH_CACHE/workloads/seed$SEED-pairs$PAIRS-fid$FG-$FD-$WL_KEY.json"
if [[ ! -f "$BENCH_WORKLOAD" ]]; then
  say "workload ($PAIRS pairs, seed $SEED)"
  "$BENCH_PROJECT_PY" scripts/bench/workload.py --tokenizer "$MODEL_DIR/ts/tokenizer.json" --pairs "$PAIRS" \
    --seed "$SEED" --fidelity-groups "$FG" --fidelity-docs "$FD" --out "$BENCH_WORKLOAD.tmp"
  mv "$BENCH_WORKLOAD.tmp" "$BENCH_WORKLOAD"
fi

export BENCH_OUT="$OUT" BENCH_CACHE="$RERANKD_BENCH_CACHE"
say "set-up done in $((SECONDS - T0))s; running the comparison"
"$BENCH_DRIVER_PY" scripts/bench/compare.py
say "done in $((SECONDS - T0))s"
