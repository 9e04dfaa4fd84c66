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

REQUIREMENTS=scripts/ci/tei/requirements.txt
CACHE_DIR="${RERANKD_CACHE:-$HOME/.cache/rerankd}"
VENV="$CACHE_DIR/tei-client-py-$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
if [[ -f "$VENV/.complete" ]]; then
  echo "test-tei-client: python venv ready at $VENV (skipping install)" >&2
else
  echo "test-tei-client: creating python venv $VENV" >&2
  # Built beside its final place and renamed, so a run in parallel never sees half a venv.
  BUILD="$VENV.building.$$"
  rm -rf "$BUILD"
  mkdir -p "$CACHE_DIR"
  if python3 -c 'import ensurepip' 2>/dev/null; then
    run python3 -m venv "$BUILD"
    PIP=("$BUILD/bin/python" -m pip)
  else
    # Debian's python3 without python3-venv has no ensurepip: make the venv without pip and
    # install into it with the system pip (pip >= 22.3).
    run python3 -m venv --without-pip "$BUILD"
    PIP=(python3 -m pip --python "$BUILD/bin/python")
  fi
  run "${PIP[@]}" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  touch "$BUILD/.complete"
  if ! mv -T "$BUILD" "$VENV" 2>/dev/null; then
    rm -rf "$BUILD" # Another run finished first; use its venv.
  fi
fi

STUBS="$(mktemp -d)"
trap 'rm -rf "$STUBS"' EXIT
run "$VENV/bin/python" -m grpc_tools.protoc -I crates/rerankd-api/proto/tei \
  --python_out="$STUBS" --grpc_python_out="$STUBS" tei.proto >&2
run "$VENV/bin/python" scripts/ci/tei/tei_client.py --addr "$ADDR" --stubs "$STUBS" --cases "$CASES" \
  --timeout "$CLIENT_TIMEOUT"
