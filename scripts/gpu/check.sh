#!/usr/bin/env bash
# The device check (issue 13 section 3): run from the kit folder that scripts/gpu/kit.sh makes, on a
# lent GPU machine (no Rust, no registry, no network), or here with --cpu as a dry run. It
#   - finds libtorch through the machine's own python (`import torch`) and PREPENDS its torch/lib to
#     LD_LIBRARY_PATH (the driver's libcuda and libnvidia-ml stay found through the existing value);
#   - makes the models with that python: a bge-reranker-large-shaped random model (tiny-xlmr with
#     --cpu) on all cores, and all-MiniLM-L6-v2 from the kit's fp16 weights;
#   - within its time budget, measures and records
#       1. NVML readings (rerankd's Stats, nvidia-ml-py, nvidia-smi) and rerankd's start-up report
#          (precision, golden gate, calibrated bytes per padded token) against a Python reference of
#          torch.cuda.max_memory_allocated per padded token for the same model;
#       2. fidelity: lowered precision (fp16; with --cpu bf16 where native, else fp32) against fp32 on
#          the real MiniLM weights, through two rerankd servers (rank agreement and max |diff|);
#       3. throughput at 512 tokens in the lowered precision through `rerankd bench`, against the same
#          TorchScript from Python at its best static batch; FLOPs per pair and MFU;
#       4. the squeeze (GPU only): under steady load a second process takes GPU memory until about
#          2 GiB is free, holds, releases; failed requests, budget, batch, free memory and OOMs;
#       5. lowered precision against fp32, graph optimisation on against off, and the server's default
#          --max-batch-pairs against the reference's best batch;
#   - writes at most 8 files to the output folder: summary.json, bench.json, throughput.svg,
#     squeeze.svg, check.log. A check that cannot run says "skipped: why" in summary.json.
#
# Usage: check.sh [--cpu] [--out DIR] [--python PY] [--budget-secs N] [--work DIR] [--keep-work]
#   --out      output folder (default: $OUT, else ./check-out)
#   --python   the python with torch (default: $RERANKD_CHECK_PYTHON, /opt/torch/.venv/bin/python3,
#              else python3 on PATH)
#   --budget-secs  the whole run's time budget (default 540 on GPU, 900 with --cpu); a step that
#              would not fit in what is left is skipped and says so
# Exit status: 0 when every step ran or was skipped with a reason (targets missed are "fail" in
# summary.json, not an exit status); 1 when a step broke (summary.json still says what did run).
#
# Servers bind 127.0.0.1 on a port found free by binding :0, and are always stopped on exit.
# Owns: the order of the run and the servers it starts. Must never: write outside --out and its work
# folder, or leave a process it started running.
set -euo pipefail

KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=gpu
OUT_DIR="${OUT:-$PWD/check-out}"
PY="${RERANKD_CHECK_PYTHON:-}"
BUDGET=""
WORK=""
KEEP_WORK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) MODE=cpu; shift ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --budget-secs) BUDGET="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --keep-work) KEEP_WORK=1; shift ;;
    *)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
      exit 2
      ;;
  esac
done
if [[ ! -x "$KIT/rerankd" || ! -f "$KIT/scripts/gpu/rpc.py" ]]; then
  echo "check.sh: $KIT is not a kit folder: build one with scripts/gpu/kit.sh and run its check.sh" >&2
  exit 2
fi
if [[ -z "$PY" ]]; then
  if [[ -x /opt/torch/.venv/bin/python3 ]]; then PY=/opt/torch/.venv/bin/python3; else PY="$(command -v python3)"; fi
fi
HELPERS="$KIT/scripts/gpu"
NPROC="$(nproc)"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [[ -z "$WORK" ]]; then WORK="$(mktemp -d "${TMPDIR:-/tmp}/rerankd-check.XXXXXX")"; fi
mkdir -p "$WORK/steps" "$WORK/servers" "$WORK/bench" "$WORK/models"
LOG="$WORK/check.log"
: >"$WORK/pids"

# ---- the run's settings ---------------------------------------------------------------------------
if [[ "$MODE" == gpu ]]; then
  BUDGET="${BUDGET:-540}"
  DEVICE=cuda:0
  LOWER=fp16
  LARGE_CFG=scripts/export/configs/bge-reranker-large.json
  REF_BATCHES=8,16,32,64,128,256
  REF_SECS=2
  CLIENTS=16 DOCS=64 WORDS=600 WARMUP=5 DURATION=30 SHORT_DURATION=10 SQUEEZE_DURATION=35
  # The Python reference again, at the server's batch, for as long as rerankd's bench and right after
  # it: the same GPU in the same state (a GPU held busy for half a minute may clock lower than the
  # 2 s windows of the sweep). The throughput target is judged against this one.
  SUSTAIN_SECS=30
  # The cold squeeze: a server started on a crowded GPU (COLD_LEAVE_GIB free), under a load that
  # wants batches of up to COLD_MAX_BATCH pairs, until the memory is given back COLD_HOLD_SECS in.
  COLD_CLIENTS=32 COLD_MAX_BATCH=1024 COLD_DURATION=40 COLD_HOLD_SECS=12 COLD_LEAVE_GIB=8
  FIDELITY_GROUPS=(--extra-queries 24)
  START_TIMEOUT=180
  DEFAULT_MAX_BATCH=64
  MAX_LENGTH_FLAGS=()
else
  # Generous: the dry run must run every step, and CI machines are shared.
  BUDGET="${BUDGET:-900}"
  DEVICE=cpu
  # rerankd's own auto rule: bf16 only where the CPU computes it natively. Emulated bf16 is many
  # times slower than fp32 (MiniLM's golden gate alone took over a minute here), and the dry run
  # proves the plumbing, not the precision.
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then LOWER=bf16; else LOWER=fp32; fi
  LARGE_CFG=scripts/export/configs/tiny-xlmr.json
  REF_BATCHES=1,4,16
  REF_SECS=0.5
  CLIENTS=2 DOCS=16 WORDS=600 WARMUP=1 DURATION=3 SHORT_DURATION=3 SQUEEZE_DURATION=0
  SUSTAIN_SECS=2
  FIDELITY_GROUPS=(--golden-only)
  START_TIMEOUT=120
  DEFAULT_MAX_BATCH=32
  # A 128-token window keeps the dry run short (bf16 is emulated on CPUs without avx512_bf16); the
  # code paths are the same as at 512.
  MAX_LENGTH_FLAGS=(--max-length 128)
fi

# Progress goes to the caller's stderr (fd 3, kept while a step's own output goes to the log) and
# to the log.
exec 3>&2
log() {
  local line
  line="check [$(date +%H:%M:%S) +${SECONDS}s] $*"
  echo "$line" >&3
  echo "$line" >>"$LOG"
}

# A JSON string of plain text.
json_str() {
  "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"
}

skip() { # CHECK WHY
  log "skipped $1: $2"
  echo "{\"check\": $(json_str "$1"), \"why\": $(json_str "$2")}" >>"$WORK/steps/skips.jsonl"
}

# A named moment (epoch seconds) in steps/marks.jsonl: summarize.py reads the clocks between two.
mark() { # NAME
  "$PY" -c 'import json, sys, time; print(json.dumps({"mark": sys.argv[1], "t": round(time.time(), 3)}))' "$1" \
    >>"$WORK/steps/marks.jsonl"
}

record_error() { # CHECK WHAT RC
  echo "{\"check\": $(json_str "$1"), \"what\": $(json_str "$2"), \"rc\": $3}" >>"$WORK/steps/errors.jsonl"
}

# Whether NEED more seconds fit in the budget; skips CHECK with the reason when not.
fits() { # CHECK NEED
  local left=$((BUDGET - SECONDS))
  if ((left < $2)); then
    skip "$1" "time budget: needs about $2 s, $left s of $BUDGET s left"
    return 1
  fi
}

# Runs a step in a subshell under set -e (inside `if` it would be off); a failure is recorded against
# CHECK and the run goes on. Servers a step starts are stopped when the step ends, whatever happens.
run_step() { # CHECK WHAT FUNCTION
  local check="$1" what="$2" rc
  shift 2
  log "$what"
  set +e
  # shellcheck disable=SC2030  # SERVER_PIDS is meant to be the step's own (its EXIT trap reads it)
  (
    set -euo pipefail
    SERVER_PIDS=()
    trap stop_servers EXIT
    "$@"
  ) >>"$LOG" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    log "$what FAILED (exit $rc); the log's last lines:"
    tail -n 15 "$LOG" | sed 's/^/    /' >&2
    record_error "$check" "$what" "$rc"
  fi
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Starts `rerankd serve` and waits for health SERVING; sets SERVER_ADDR and SERVER_PID.
start_server() { # NAME MODEL_DIR DTYPE [rerankd serve flags...]
  local name="$1" model="$2" dtype="$3" port waited
  shift 3
  port="$(free_port)"
  SERVER_ADDR="127.0.0.1:$port"
  echo "+ rerankd serve --model $model --addr $SERVER_ADDR --devices $DEVICE --dtype $dtype $*"
  RUST_LOG="${RUST_LOG:-info,rerankd::grpc::trace=warn}" "$KIT/rerankd" serve --model "$model" \
    --addr "$SERVER_ADDR" --devices "$DEVICE" --dtype "$dtype" --log-format json \
    --http-addr off --drain-delay-secs 0 --grace-period-secs 20 "$@" >"$WORK/servers/$name.log" 2>&1 &
  SERVER_PID=$!
  # shellcheck disable=SC2031  # runs inside a step's subshell, which owns its SERVER_PIDS
  SERVER_PIDS+=("$SERVER_PID")
  echo "$SERVER_PID" >>"$WORK/pids"
  if ! waited="$("$PY" "$HELPERS/rpc.py" wait "$SERVER_ADDR" --pid "$SERVER_PID" --timeout "$START_TIMEOUT")"; then
    log "server $name did not become SERVING; the end of its log:"
    tail -n 15 "$WORK/servers/$name.log" | sed 's/^/    /' | tee -a "$LOG" >&3
    return 1
  fi
  "$PY" - "$WORK/servers/$name.json" "$name" "$model" "$dtype" "$SERVER_ADDR" "$waited" "$*" <<'EOF'
import json, sys
path, name, model, dtype, addr, waited, flags = sys.argv[1:]
json.dump({"name": name, "model": model, "dtype": dtype, "addr": addr, "flags": flags,
           "serving_after_secs": json.loads(waited)["serving_after_secs"]}, open(path, "w"), indent=2)
EOF
  log "server $name is SERVING at $SERVER_ADDR (pid $SERVER_PID)"
}

# SIGTERM (the server drains within its 20 s grace period), SIGKILL if it is still there after 30 s.
stop_server() { # PID
  local pid="$1" i state
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || break
    [[ -z "$state" || "$state" == Z ]] && break
    sleep 0.1 # polls for the process's exit; nothing else signals it
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do stop_server "$pid"; done
  SERVER_PIDS=()
}

bench() { # NAME ADDR DURATION [CLIENTS [WARMUP]]
  mark "bench $1 start"
  "$KIT/rerankd" bench --addr "$2" --clients "${4:-$CLIENTS}" --documents "$DOCS" --lengths fixed \
    --words "$WORDS" --warmup "${5:-$WARMUP}" --duration "$3" --sample-ms 100 --no-progress \
    --json "$WORK/bench/$1.json" --plot "$WORK/bench/$1.svg"
  mark "bench $1 end"
}

max_batch() { # the reference's best static batch, else the default
  "$PY" - "$WORK/steps/reference.json" "$DEFAULT_MAX_BATCH" <<'EOF'
import json, sys
try:
    print(json.load(open(sys.argv[1]))["best"]["batch"])
except Exception:
    print(sys.argv[2])
EOF
}

# ---- the steps ------------------------------------------------------------------------------------

step_env() {
  "$PY" "$HELPERS/devinfo.py" env --out "$WORK/steps/env.json"
}

export_model() { # NAME [export_model.py flags...]
  local name="$1" t0=$SECONDS
  shift
  "$PY" "$KIT/scripts/export/export_model.py" --threads "$NPROC" --out "$WORK/models/$name" ${MAX_LENGTH_FLAGS[@]+"${MAX_LENGTH_FLAGS[@]}"} "$@"
  "$PY" - "$WORK/models/$name.json" "$WORK/models/$name" "$((SECONDS - t0))" <<'EOF'
import json, re, sys, zipfile
path, model, secs = sys.argv[1:]
meta = json.load(open(f"{model}/rerankd.json"))
# Device constants baked into the TorchScript code keep a model off CUDA (issue 13, section 1).
constants = set()
with zipfile.ZipFile(f"{model}/model.pt") as z:
    for name in z.namelist():
        if "/code/" in name and name.endswith(".py"):
            constants.update(re.findall(r'torch\.device\("[a-z]+(?::\d+)?"\)', z.read(name).decode("utf-8", "replace")))
json.dump({"secs": int(secs), "dir": model, "device_constants": sorted(constants), "rerankd.json": meta},
          open(path, "w"), indent=2)
EOF
}

step_models() {
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  "$PY" "$KIT/scripts/export/make_test_tokenizer.py" "$WORK/tok-xlmr"
  # The kit's weights are fp16-rounded, so sentence-transformers parity (made on the original weights
  # by scripts/setup-models.sh) is not this export's business; the GPU machine lacks the package too.
  export_model minilm --hf-dir "$KIT/minilm" --skip-st-check --name "all-MiniLM-L6-v2, fp16-rounded weights (pair cosine)"
  export_model large --random-init "$KIT/$LARGE_CFG" --tokenizer "$WORK/tok-xlmr" --seed 0
}

step_reference() {
  mark "reference start"
  "$PY" "$HELPERS/reference.py" --model "$WORK/models/large" --device "$DEVICE" --dtype "$LOWER" \
    --length 512 --batches "$REF_BATCHES" --secs "$REF_SECS" --out "$WORK/steps/reference.json"
  mark "reference end"
}

# Checks 1, 3 and 4 share one server: the large model in the lowered precision.
step_large_lowered() {
  local maxb
  maxb="$(max_batch)"
  start_server large-lowered "$WORK/models/large" "$LOWER" --max-batch-pairs "$maxb"
  local addr="$SERVER_ADDR"
  if [[ "$MODE" == gpu ]]; then
    "$PY" "$HELPERS/devinfo.py" nvml --addr "$addr" --out "$WORK/steps/nvml.json" ||
      record_error 1_nvml_and_startup "NVML readings" $?
  fi
  bench throughput "$addr" "$DURATION"
  mark "reference-sustained start"
  "$PY" "$HELPERS/reference.py" --model "$WORK/models/large" --device "$DEVICE" --dtype "$LOWER" \
    --length 512 --batches "$maxb" --secs "$SUSTAIN_SECS" --memory-batches "" \
    --out "$WORK/steps/reference-sustained.json" ||
    record_error 3_throughput "sustained Python reference" $?
  mark "reference-sustained end"
  if [[ "$MODE" != gpu ]]; then
    skip 4_squeeze "no GPU (--cpu): there is no device memory to take"
  elif fits 4_squeeze $((SQUEEZE_DURATION + WARMUP + 30)); then
    squeeze "$addr"
  fi
}

squeeze() { # ADDR
  local bench_pid rc=0 i
  bench squeeze "$1" "$SQUEEZE_DURATION" >"$WORK/bench/squeeze.out" 2>&1 &
  bench_pid=$!
  echo "$bench_pid" >>"$WORK/pids"
  # Squeeze once the bench measures: it prints "stats at start" when its measured phase begins.
  for ((i = 0; i < 600; i++)); do
    grep -q "stats at start" "$WORK/bench/squeeze.out" && break
    kill -0 "$bench_pid" 2>/dev/null || break
    sleep 0.1
  done
  "$PY" "$HELPERS/squeeze.py" --out "$WORK/steps/squeeze-timeline.json" --device "$DEVICE" \
    --leave-gib 2 --step-gib 8 --step-secs 0.5 --hold-secs 12 --release-steps 4 || rc=$?
  wait "$bench_pid" || rc=$?
  cat "$WORK/bench/squeeze.out"
  return "$rc"
}

# The squeeze that bites: a warm server's allocator keeps its calibration's and its last batches'
# memory cached, and no other process can take that, so a squeeze under steady load leaves its
# batches alone. Here the memory is taken first, the server starts on what is left (calibration and
# the budget see a crowded GPU), a load wanting bigger batches arrives, and then the memory is given
# back: the budget must grow into it, with no failed request.
step_squeeze_cold() {
  local sq_pid bench_pid rc=0 i
  "$PY" "$HELPERS/squeeze.py" --out "$WORK/steps/squeeze-cold-timeline.json" --device "$DEVICE" \
    --leave-gib "$COLD_LEAVE_GIB" --step-gib 8 --step-secs 0.5 --hold-secs 120 --release-steps 4 \
    --ready-file "$WORK/steps/squeeze-cold.ready" --release-file "$WORK/steps/squeeze-cold.release" &
  sq_pid=$!
  echo "$sq_pid" >>"$WORK/pids"
  for ((i = 0; i < 900; i++)); do
    [[ -f "$WORK/steps/squeeze-cold.ready" ]] && break
    kill -0 "$sq_pid" 2>/dev/null || break
    sleep 0.1 # polls for the squeezer's ready file
  done
  start_server large-cold "$WORK/models/large" "$LOWER" --max-batch-pairs "$COLD_MAX_BATCH" || {
    touch "$WORK/steps/squeeze-cold.release"
    wait "$sq_pid"
    return 1
  }
  bench squeeze-cold "$SERVER_ADDR" "$COLD_DURATION" "$COLD_CLIENTS" 0 >"$WORK/bench/squeeze-cold.out" 2>&1 &
  bench_pid=$!
  echo "$bench_pid" >>"$WORK/pids"
  for ((i = 0; i < 600; i++)); do
    grep -q "stats at start" "$WORK/bench/squeeze-cold.out" && break
    kill -0 "$bench_pid" 2>/dev/null || break
    sleep 0.1 # polls for the bench's measured phase
  done
  sleep "$COLD_HOLD_SECS" # the squeezed part of the load (what is measured), not synchronisation
  touch "$WORK/steps/squeeze-cold.release"
  wait "$bench_pid" || rc=$?
  wait "$sq_pid" || rc=$?
  cat "$WORK/bench/squeeze-cold.out"
  return "$rc"
}

step_fidelity() {
  start_server minilm-lowered "$WORK/models/minilm" "$LOWER"
  local lower="$SERVER_ADDR"
  start_server minilm-fp32 "$WORK/models/minilm" fp32
  "$PY" "$HELPERS/fidelity.py" --lower "$lower" --asked "$LOWER" --fp32 "$SERVER_ADDR" "${FIDELITY_GROUPS[@]}" \
    --out "$WORK/steps/fidelity.json"
}

step_fp32() {
  start_server large-fp32 "$WORK/models/large" fp32 --max-batch-pairs "$(max_batch)"
  bench fp32 "$SERVER_ADDR" "$SHORT_DURATION"
}

# What a user gets without tuning: the same load with rerankd's default --max-batch-pairs.
step_default_batch() {
  start_server large-default-batch "$WORK/models/large" "$LOWER"
  bench default-batch "$SERVER_ADDR" "$SHORT_DURATION"
}

step_graph_off() {
  start_server large-graph-off "$WORK/models/large" "$LOWER" --max-batch-pairs "$(max_batch)" \
    --graph-optimization off
  bench graph-off "$SERVER_ADDR" "$SHORT_DURATION"
}

# ---- the run --------------------------------------------------------------------------------------

finish() {
  local rc=$? pid
  trap - EXIT INT TERM
  while read -r pid; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done <"$WORK/pids"
  if [[ -s "$WORK/steps/errors.jsonl" && "$rc" == 0 ]]; then rc=1; fi
  log "writing $OUT_DIR (exit $rc)"
  "$PY" "$HELPERS/summarize.py" --work "$WORK" --out "$OUT_DIR" --mode "$MODE" --kit "$KIT" --final-rc "$rc" >&2 ||
    { echo "check.sh: summarize.py failed" >&2; rc=1; }
  if ((KEEP_WORK)); then echo "check.sh: work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The driver's own folders, after whatever the machine already says (nvidia-smi, libcuda, NVML).
if [[ -d /usr/local/nvidia/bin ]]; then export PATH="$PATH:/usr/local/nvidia/bin"; fi
for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  if [[ -d "$dir" && ":$LD_LIBRARY_PATH:" != *":$dir:"* ]]; then export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"; fi
done
if ! SERVE_HELP="$("$KIT/rerankd" serve --help 2>>"$LOG")"; then
  log "the rerankd binary does not run here; its error:"
  tail -n 5 "$LOG" | sed 's/^/    /' >&2
  record_error env "rerankd serve --help" 1
  exit 1
fi
GRAPH_FLAG=absent
if [[ "$SERVE_HELP" == *--graph-optimization* ]]; then GRAPH_FLAG=present; fi
"$PY" - "$WORK/steps/meta.json" "$MODE" "$BUDGET" "$KIT/$LARGE_CFG" "$GRAPH_FLAG" "$TORCH_LIB" "$PY" <<'EOF'
import datetime, json, sys, time
path, mode, budget, cfg, graph, torch_lib, py = sys.argv[1:]
json.dump({"mode": mode, "budget_secs": int(budget), "large_config": cfg, "graph_flag": graph,
           "torch_lib": torch_lib, "python": py, "started_epoch": time.time(),
           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
          open(path, "w"), indent=2)
EOF
if [[ "$MODE" == gpu ]]; then
  "$PY" "$HELPERS/devinfo.py" clocks --out "$WORK/steps/clocks.jsonl" &
  echo "$!" >>"$WORK/pids"
fi
log "mode $MODE, budget ${BUDGET}s, kit $KIT, python $PY, LD_LIBRARY_PATH starts with $TORCH_LIB, work $WORK"

run_step env "environment" step_env
run_step models "making the models" step_models
if [[ ! -f "$WORK/models/large/model.pt" ]]; then
  log "no large model: nothing to measure"
  exit 1
fi
if fits 3_throughput 60; then run_step 3_throughput "Python reference (TorchScript, static batches)" step_reference; fi
if fits 3_throughput $((WARMUP + DURATION + 60)); then
  run_step 3_throughput "large model, $LOWER: start-up report, NVML, throughput, squeeze" step_large_lowered
else
  skip 1_nvml_and_startup "time budget"
fi
if [[ "$MODE" == gpu ]] && fits 4_squeeze_cold $((COLD_DURATION + 45)); then
  run_step 4_squeeze "large model, $LOWER: the cold squeeze (memory taken before the load)" step_squeeze_cold
fi
if fits 2_fidelity 60; then run_step 2_fidelity "fidelity: MiniLM $LOWER vs fp32" step_fidelity; fi
if fits 5_precision_and_graph $((WARMUP + SHORT_DURATION + 40)); then
  run_step 5_precision_and_graph "large model, fp32" step_fp32
fi
if [[ "$GRAPH_FLAG" != present ]]; then
  skip graph-off "flag absent: rerankd serve --help does not list --graph-optimization"
elif fits graph-off $((WARMUP + SHORT_DURATION + 40)); then
  run_step 5_precision_and_graph "large model, $LOWER, graph optimisation off" step_graph_off
fi
if fits default-batch $((WARMUP + SHORT_DURATION + 40)); then
  run_step 5_precision_and_graph "large model, $LOWER, the default --max-batch-pairs" step_default_batch
fi
log "done in ${SECONDS}s"
