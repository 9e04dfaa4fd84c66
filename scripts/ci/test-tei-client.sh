#!/usr/bin/env bash
# Runs a TEI gRPC client (scripts/ci/tei/tei_client.py) against a running rerankd at ADDR: stubs
# compiled at run time with grpcio-tools from TEI's own tei.proto (the unchanged copy in
# crates/rerankd-api/proto/tei), as a TEI user would. The client prints what it got as one JSON
# line on stdout; tests/it/tei.rs runs this and compares the scores with rerankd's own API.
#
# Installs what it needs when it is missing: a Python venv with scripts/ci/tei/requirements.txt,
# cached under ~/.cache/rerankd/tei-client-py-<hash of requirements.txt> ($RERANKD_CACHE moves
# ~/.cache/rerankd). A second run skips the install. The stubs go to a temporary folder, removed at
# exit, so parallel runs never share them and none is left in the tree.
#
# Usage: scripts/ci/test-tei-client.sh ADDR CASES.json   (CASES.json: see tei_client.py)
# Env:   CLIENT_TIMEOUT  per-call deadline of the client, seconds (default 10)
# Owns: the venv, the stubs, and running the client. Must never: write into the source tree.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 HOST:PORT CASES.json   (address of a running rerankd, the client's inputs)" >&2
  exit 2
fi
ADDR="$1"
CASES="$(realpath "$2")"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-10}"
cd "$(dirname "$0")/../.."

for tool in python3 sha256sum; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-tei-client: '$tool' not found; the client needs Python 3.11 + pip" >&2
    exit 1
  fi
done

run() {
  echo "+ $*" >&2
  "$@"
}

source scripts/ci/client-venv.sh
client_venv test-tei-client tei-client-py scripts/ci/tei/requirements.txt

STUBS="$(mktemp -d)"
trap 'rm -rf "$STUBS"' EXIT
run "$VENV/bin/python" -m grpc_tools.protoc -I crates/rerankd-api/proto/tei \
  --python_out="$STUBS" --grpc_python_out="$STUBS" tei.proto >&2
run "$VENV/bin/python" scripts/ci/tei/tei_client.py --addr "$ADDR" --stubs "$STUBS" --cases "$CASES" \
  --timeout "$CLIENT_TIMEOUT"
