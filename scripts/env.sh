# shellcheck shell=bash
# Sourced by scripts/test.sh, the bench and kit scripts: puts the project venv's python
# first on PATH so torch-sys (LIBTORCH_USE_PYTORCH=1) finds libtorch 2.11.0 there.
# Usage: source scripts/env.sh   (creates the venv on first use)
RERANKD_VENV="$(bash "$(dirname "${BASH_SOURCE[0]}")/setup-venv.sh" | tail -n 1)"
export RERANKD_VENV
export PATH="$RERANKD_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
