#!/usr/bin/env bash
# Runs the HTTP API's real clients (examples/http) against running rerankd
# servers, and fails if any of their checks fails: the official Cohere Python
# SDK and requests (examples/http/http_clients.py), and Node 20's built-in
# fetch (examples/http/fetch_client.mjs). tests/it/http.rs starts the servers
# and calls it.
#
# Installs what the Python client needs when it is missing, so it works on a
# fresh machine with Python 3.11 + pip and access to PyPI: a venv with
# examples/http/requirements.txt, cached under
# ~/.cache/rerankd/http-clients-py-<hash of requirements.txt> ($RERANKD_CACHE
# moves ~/.cache/rerankd). A second run skips the install. Node needs nothing.
#
# Usage: scripts/ci/test-http-clients.sh ADDR LIMITS_ADDR LOADING_ADDR EXPECTED_JSON
#   ADDR          HTTP port of a serving rerankd with the default limits
#   LIMITS_ADDR   one with --max-documents 8, 64 KiB in flight, a 2 s request
#                 timeout and --served-model-name tiny
#   LOADING_ADDR  one whose model is still loading
#   EXPECTED_JSON gRPC Rerank's scores for the clients' input
set -euo pipefail

if [[ $# -ne 4 ]]; then
  echo "usage: $0 ADDR LIMITS_ADDR LOADING_ADDR EXPECTED_JSON" >&2
  exit 2
fi
ADDR="$1"
LIMITS="$2"
LOADING="$3"
EXPECTED="$4"
cd "$(dirname "$0")/../.."

for tool in python3 node sha256sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-http-clients: '$tool' not found; the clients need Python 3.11 + pip and Node 20" >&2
    exit 1
  fi
done

run() {
  echo "+ $*" >&2
  "$@"
}

DIR=examples/http
source scripts/ci/client-venv.sh
client_venv test-http-clients http-clients-py "$DIR/requirements.txt"

failed=()
echo "test-http-clients: python (cohere SDK, requests) against $ADDR" >&2
run "$VENV/bin/python" "$DIR/http_clients.py" --addr "$ADDR" --limits "$LIMITS" \
  --loading "$LOADING" --expected "$EXPECTED" || failed+=(python)
echo "test-http-clients: node fetch against $ADDR" >&2
run node "$DIR/fetch_client.mjs" --addr "$ADDR" --expected "$EXPECTED" || failed+=(node)

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "test-http-clients: FAILED: ${failed[*]} client(s)" >&2
  exit 1
fi
echo "test-http-clients: every http client passed" >&2
