#!/usr/bin/env bash
# Runs the example clients (examples/python, examples/node) against a running
# rerankd at ADDR, and fails if either of their checks fails.
#
# Installs what they need when it is missing, so it works on a fresh machine
# with Python 3.11 + pip, Node 20 + npm and access to PyPI and npm:
#   - a Python venv with examples/python/requirements.txt, cached under
#     ~/.cache/rerankd/clients-py-<hash of requirements.txt> ($RERANKD_CACHE
#     moves ~/.cache/rerankd);
#   - examples/node/node_modules from package-lock.json (npm ci), skipped
#     while a stamp in it matches the lock file.
# A second run skips both installs. The Python stubs are generated from the
# proto on every run (under a second), so they never go stale.
#
# Usage: scripts/ci/test-clients.sh ADDR     e.g. scripts/ci/test-clients.sh 127.0.0.1:50051
# Env:   CLIENT_TIMEOUT  per-call deadline of the clients, seconds (default 10)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 HOST:PORT   (address of a running rerankd)" >&2
  exit 2
fi
ADDR="$1"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-10}"
cd "$(dirname "$0")/../.."

for tool in python3 node npm sha256sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-clients: '$tool' not found; the clients need Python 3.11 + pip, Node 20 + npm" >&2
    exit 1
  fi
done

# Prints a command, then runs it.
run() {
  echo "+ $*" >&2
  "$@"
}

# The first 16 hex digits of a file's SHA-256.
hash_of() {
  sha256sum "$1" | cut -c1-16
}

# --- Python: a venv keyed by requirements.txt -------------------------------
PY_DIR=examples/python
source scripts/ci/client-venv.sh
client_venv test-clients clients-py "$PY_DIR/requirements.txt"

echo "test-clients: generating python stubs in $PY_DIR/generated" >&2
rm -rf "$PY_DIR/generated"
mkdir -p "$PY_DIR/generated"
run "$VENV/bin/python" -m grpc_tools.protoc -I proto \
  --python_out="$PY_DIR/generated" --grpc_python_out="$PY_DIR/generated" \
  rerank/v1/rerank.proto

# --- Node: node_modules from the lock file ----------------------------------
NODE_DIR=examples/node
STAMP="$NODE_DIR/node_modules/.rerankd-lock-hash"
LOCK_HASH="$(hash_of "$NODE_DIR/package-lock.json")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$LOCK_HASH" ]]; then
  echo "test-clients: $NODE_DIR/node_modules matches package-lock.json (skipping npm ci)" >&2
else
  # No install scripts: these packages are plain JavaScript.
  run npm ci --prefix "$NODE_DIR" --ignore-scripts --no-audit --no-fund
  echo "$LOCK_HASH" > "$STAMP"
fi

# --- Run both clients; fail if either does ----------------------------------
failed=()
echo "test-clients: python client against $ADDR" >&2
run "$VENV/bin/python" "$PY_DIR/rerank_client.py" --addr "$ADDR" --timeout "$CLIENT_TIMEOUT" \
  || failed+=(python)
echo "test-clients: node client against $ADDR" >&2
run node "$NODE_DIR/rerank_client.js" --addr "$ADDR" --timeout "$CLIENT_TIMEOUT" \
  || failed+=(node)

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "test-clients: FAILED: ${failed[*]} client(s) against $ADDR" >&2
  exit 1
fi
echo "test-clients: both clients passed against $ADDR" >&2
