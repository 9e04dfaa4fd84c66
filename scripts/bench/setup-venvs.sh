#!/usr/bin/env bash
# Creates (once) the benchmark's own virtualenvs, outside the clone, keyed by their pinned versions:
#
#   $BENCH_CACHE/venv-driver-<key>     the load driver: grpcio(+tools), protobuf, aiohttp (no torch)
#   $BENCH_CACHE/venv-flag-<key>       FlagEmbedding (FlagReranker) with its own torch/transformers
#   $BENCH_CACHE/venv-infinity-<key>   infinity-emb (server, torch and optimum/onnxruntime engines)
#
# The project venv (scripts/setup-venv.sh) is never modified. Usage:
#   setup-venvs.sh driver|flag|infinity
# prints the venv's path on the last line of stdout and exits 0, or exits 1 with the reason on the
# last line of stderr (the pip log stays in $BENCH_CACHE/logs/). A failed install is remembered
# (<venv>.failed) and not retried on later runs unless RERANKD_BENCH_RETRY_INSTALL=1.
#
# PyPI's Linux torch wheels are the CUDA builds (the CPU-only ones are not on PyPI); they run on the
# CPU just the same. Every venv pins torch 2.11.0, the libtorch the server runs, so all contenders
# share the same CPU kernels (MKL/oneDNN) and pip downloads the big wheels once (its cache).
set -euo pipefail

WHAT="${1:?usage: setup-venvs.sh driver|flag|infinity}"
BENCH_CACHE="${RERANKD_BENCH_CACHE:-${RERANKD_CACHE:-$HOME/.cache/rerankd}/bench}"
mkdir -p "$BENCH_CACHE/logs"

TORCH=2.11.0
case "$WHAT" in
  driver)
    PKGS=("grpcio==1.85.1" "grpcio-tools==1.85.1" "protobuf==7.36.2" "aiohttp==3.13.3")
    KEY="driver-grpc1.85.1-aiohttp3.13.3-v1"
    CHECK="import grpc, grpc_tools, aiohttp"
    ;;
  flag)
    FLAG_VERSION="${RERANKD_BENCH_FLAG_VERSION:-1.4.2}"
    # FlagEmbedding 1.4 is written against transformers 4.x (not 5).
    PKGS=("FlagEmbedding==$FLAG_VERSION" "torch==$TORCH" "transformers==4.51.3" "sentence-transformers==4.1.0"
          "numpy<2.3")
    KEY="flag-$FLAG_VERSION-torch$TORCH-tf4.51.3-v1"
    CHECK="from FlagEmbedding import FlagReranker"
    ;;
  infinity)
    INF_VERSION="${RERANKD_BENCH_INFINITY_VERSION:-0.0.78}"
    # infinity-emb 0.0.7x needs sentence-transformers < 4 and numpy < 2, and its optimum import path
    # (BetterTransformer) refuses transformers >= 4.49: transformers 4.48.3 and optimum 1.24.0 are
    # the newest that start together. pyarrow (via datasets) >= 21 refuses numpy 1.x at import.
    PKGS=("infinity-emb[server,torch,optimum]==$INF_VERSION" "torch==$TORCH" "transformers==4.48.3"
          "optimum[onnxruntime]==1.24.0" "sentence-transformers==3.4.1" "numpy<2" "pyarrow<21")
    KEY="infinity-$INF_VERSION-torch$TORCH-tf4.48.3-opt1.24.0-v1"
    CHECK="import infinity_emb, optimum.onnxruntime"
    ;;
  *)
    echo "setup-venvs: unknown venv '$WHAT'" >&2
    exit 2
    ;;
esac

VENV="$BENCH_CACHE/venv-$KEY"
LOG="$BENCH_CACHE/logs/venv-$KEY.log"
if [[ -f "$VENV/.complete" ]]; then
  echo "$VENV"
  exit 0
fi
if [[ -f "$VENV.failed" && "${RERANKD_BENCH_RETRY_INSTALL:-0}" != 1 ]]; then
  echo "setup-venvs: $WHAT: an earlier install failed (RERANKD_BENCH_RETRY_INSTALL=1 retries): $(tail -n 1 "$VENV.failed")" >&2
  exit 1
fi

# One installer per venv at a time.
exec 9>"$VENV.lock"
flock 9
if [[ -f "$VENV/.complete" ]]; then
  echo "$VENV"
  exit 0
fi

fail() {
  mkdir -p "$(dirname "$VENV")"
  echo "$1" >"$VENV.failed"
  echo "setup-venvs: $WHAT: $1 (log: $LOG)" >&2
  exit 1
}

echo "setup-venvs: creating $VENV (log: $LOG; torch is several GB the first time)" >&2
t0=$SECONDS
rm -f "$VENV.failed"
# A venv left by an interrupted or failed install is reused: pip only fixes what is missing.
if [[ ! -x "$VENV/bin/python" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >"$LOG" 2>&1 || fail "python3 -m venv failed"
fi
"$VENV/bin/python" -m pip install --upgrade pip >"$LOG" 2>&1 || fail "pip upgrade failed"
if ! "$VENV/bin/python" -m pip install "${PKGS[@]}" >>"$LOG" 2>&1; then
  reason="$(grep -E '^(ERROR|error):' "$LOG" | tail -n 3 | tr '\n' ' ')"
  fail "pip install ${PKGS[*]} failed: ${reason:-see log}"
fi
if ! "$VENV/bin/python" -c "$CHECK" >>"$LOG" 2>&1; then
  fail "installed, but '$CHECK' fails: $(tail -n 1 "$LOG")"
fi
"$VENV/bin/python" -m pip freeze >"$VENV/requirements.freeze.txt" 2>/dev/null || true
touch "$VENV/.complete"
echo "setup-venvs: $WHAT ready in $((SECONDS - t0))s" >&2
echo "$VENV"
