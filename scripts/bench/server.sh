# shellcheck shell=bash
# Sourced by scripts/bench/soak.sh and scripts/bench/contention.sh: starts `rerankd serve` on a free
# port of 127.0.0.1 with its log in OUT/server.log, and stops it with SIGTERM.
#
# The server's log goes through a FIFO so that its bound address can be read as soon as it serves;
# a background cat then copies the rest to server.log.
#
#   bench_server_start NAME BIN_DIR MODEL OUT [SERVE ARGS...]
#       sets SERVER_PID and ADDR (host:port); exits the script if the server stops before serving.
#       An EXIT trap kills the server should the script end first.
#   bench_server_stop NAME OUT
#       SIGTERM, waits; exits the script with 1 unless the server exited 0.
# Owns: the server's life around a bench run. Must never: measure or judge anything.

bench_server_start() {
  local name="$1" bin_dir="$2" model="$3" out="$4"
  shift 4
  BENCH_SERVER_FIFO="$(mktemp -u "${TMPDIR:-/tmp}/rerankd-$name.XXXXXX")"
  mkfifo "$BENCH_SERVER_FIFO"
  RUST_LOG="${RUST_LOG:-info}" "$bin_dir/rerankd" serve --model "$model" --addr 127.0.0.1:0 \
    --http-addr off --drain-delay-secs 1 "$@" 2>"$BENCH_SERVER_FIFO" &
  SERVER_PID=$!
  trap bench_server_cleanup EXIT
  exec 3<"$BENCH_SERVER_FIFO"
  : >"$out/server.log"
  ADDR=""
  local line
  while IFS= read -r line <&3; do
    printf '%s\n' "$line" >>"$out/server.log"
    if [[ $line == *"serving rerank.v1.Reranker addr="* ]]; then
      ADDR="${line##*addr=}"
      break
    fi
  done
  if [[ -z $ADDR ]]; then
    echo "$name.sh: rerankd exited before serving; its log is $out/server.log" >&2
    exit 1
  fi
  cat <&3 >>"$out/server.log" &
  echo "$name.sh: rerankd (pid $SERVER_PID) serves $model on $ADDR; results in $out" >&2
}

bench_server_cleanup() {
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  rm -f "$BENCH_SERVER_FIFO"
}

bench_server_stop() {
  local name="$1" out="$2" status=0
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || status=$?
  trap - EXIT
  rm -f "$BENCH_SERVER_FIFO"
  if [[ $status != 0 ]]; then
    echo "$name.sh: rerankd exited with status $status after SIGTERM (log: $out/server.log)" >&2
    exit 1
  fi
}
