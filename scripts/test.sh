#!/usr/bin/env bash
# Runs every check a submission must pass: formatting, clippy, and the unit and
# end-to-end tests against real exported models. On a fresh machine it first
# creates the project's venv and exports the test models (cached under
# ~/.cache/rerankd, so a second run skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
RERANKD_TEST_MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
export RERANKD_TEST_MODELS
echo "test models: $RERANKD_TEST_MODELS" >&2
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
