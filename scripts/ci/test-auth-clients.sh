#!/usr/bin/env bash
# Runs real clients against a running rerankd that requires API keys, and fails if any check fails
# (scripts/ci/auth-clients/check_keys.py says which): grpcio on the gRPC port with the right key,
# a wrong one and none, and health without one; with --http, the official Cohere Python SDK on the
# HTTP port with the right key and a wrong one.
#
# Installs what the clients need when it is missing: a Python venv with
# scripts/ci/auth-clients/requirements.txt, cached under
# ~/.cache/rerankd/auth-clients-py-<hash of requirements.txt> ($RERANKD_CACHE moves
# ~/.cache/rerankd); a second run skips the install. The gRPC stubs are generated from the proto
# into a temporary folder on every run.
#
# Usage: RERANKD_TEST_API_KEY=KEY scripts/ci/test-auth-clients.sh --grpc HOST:PORT [--http URL]
#   (the key comes through the environment, not the command line, which `ps` shows)
# Owns: that venv and the run. Must never: print the key.
set -euo pipefail

USAGE="usage: RERANKD_TEST_API_KEY=KEY $0 --grpc HOST:PORT [--http URL]"
GRPC_ADDR=""
HTTP_URL=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --grpc) GRPC_ADDR="$2"; shift 2 ;;
    --http) HTTP_URL="$2"; shift 2 ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done
if [[ -z "$GRPC_ADDR" || -z "${RERANKD_TEST_API_KEY:-}" ]]; then
  echo "$USAGE" >&2
  exit 2
fi
cd "$(dirname "$0")/../.."

DIR=scripts/ci/auth-clients
source scripts/ci/client-venv.sh
client_venv test-auth-clients auth-clients-py "$DIR/requirements.txt"

STUBS="$(mktemp -d)"
trap 'rm -rf "$STUBS"' EXIT
"$VENV/bin/python" -m grpc_tools.protoc -I proto --python_out="$STUBS" --grpc_python_out="$STUBS" \
  rerank/v1/rerank.proto

ARGS=(--grpc "$GRPC_ADDR" --stubs "$STUBS")
if [[ -n "$HTTP_URL" ]]; then
  ARGS+=(--http "$HTTP_URL")
fi
"$VENV/bin/python" "$DIR/check_keys.py" "${ARGS[@]}"
