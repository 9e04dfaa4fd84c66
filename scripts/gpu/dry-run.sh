#!/usr/bin/env bash
# The device kit's CPU dry run (scripts/test.sh runs it): builds the kit (scripts/gpu/kit.sh), copies
# it out of the repository, runs the copy's check.sh --cpu with a python made to look like the GPU
# machine's, and asserts on its summary.json that every check that can run without a GPU ran and
# passed, that the squeeze said it was skipped, and that the output folder fits what comes back from
# a device run (at most 8 files, 16 MiB each).
#
# The GPU machine's python has transformers 5.17 and grpcio; the project venv has transformers 5.24
# and no grpcio. So the dry run puts an overlay first on PYTHONPATH: transformers 5.17.0 (with its own
# dependencies) and grpcio 1.85.1 (the version examples/python pins), installed once with pip
# --target into ${RERANKD_CACHE:-~/.cache/rerankd}/kit-pyoverlay-<versions>/; torch comes from the
# project venv. This also proves the exporter still runs with the older transformers.
#
# Usage: scripts/gpu/dry-run.sh      (about 2 minutes; the first run adds ~40 s of pip install)
# Owns: the dry run's assertions. Must never: write into the repository except gpu-kit/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [[ -z "${RERANKD_VENV:-}" ]]; then
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
fi
PY="$RERANKD_VENV/bin/python"
TRANSFORMERS_VERSION=5.17.0
GRPCIO_VERSION=1.85.1
CACHE_DIR="${RERANKD_CACHE:-$HOME/.cache/rerankd}"
OVERLAY="$CACHE_DIR/kit-pyoverlay-tf$TRANSFORMERS_VERSION-grpcio$GRPCIO_VERSION"
if [[ ! -f "$OVERLAY/.complete" ]]; then
  echo "dry-run: installing transformers $TRANSFORMERS_VERSION and grpcio $GRPCIO_VERSION into $OVERLAY" >&2
  rm -rf "$OVERLAY"
  "$PY" -m pip install --quiet --disable-pip-version-check --target "$OVERLAY" \
    "transformers==$TRANSFORMERS_VERSION" "grpcio==$GRPCIO_VERSION" >&2
  touch "$OVERLAY/.complete"
fi

START=$SECONDS
KIT="$(bash scripts/gpu/kit.sh | tail -n 1)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/rerankd-dry-run.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
cp -a "$KIT" "$TMP/kit"
echo "dry-run: kit ready in $((SECONDS - START))s; running $TMP/kit/check.sh --cpu" >&2

CHECK_START=$SECONDS
rc=0
PYTHONPATH="$OVERLAY" RERANKD_CHECK_PYTHON="$PY" bash "$TMP/kit/check.sh" --cpu --out "$TMP/out" || rc=$?
echo "dry-run: check.sh --cpu took $((SECONDS - CHECK_START))s (exit $rc)" >&2

"$PY" scripts/gpu/summarize.py --assert-dry-run "$TMP/out/summary.json"
FILES="$(find "$TMP/out" -type f | wc -l)"
BIG="$(find "$TMP/out" -type f -size +16M)"
if ((FILES > 8)) || [[ -n "$BIG" ]]; then
  echo "dry-run: FAILED: the output folder has $FILES files (at most 8), over 16 MiB: ${BIG:-none}" >&2
  exit 1
fi
if ((rc != 0)); then
  echo "dry-run: FAILED: check.sh exited $rc" >&2
  exit 1
fi
echo "dry-run: ok ($FILES files: $(find "$TMP/out" -type f -printf '%f '))" >&2
