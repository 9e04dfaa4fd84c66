#!/usr/bin/env bash
# Runs every check a submission must pass: the shell and Python linters
# (scripts/ci/lint.sh), formatting, clippy, the deployment files' validators,
# and the unit and end-to-end tests against real exported models (the latter
# include the Python and Node example clients), and the device kit's CPU dry
# run (scripts/gpu/dry-run.sh). On a fresh machine it first installs the
# linters, creates the project's venv, exports the test models and installs the
# validators and client dependencies (all cached under ~/.cache/rerankd, so a
# second run skips them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci/install-tools.sh lint >/dev/null
bash scripts/ci/lint.sh
source scripts/env.sh
RERANKD_TEST_MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
export RERANKD_TEST_MODELS
echo "test models: $RERANKD_TEST_MODELS" >&2
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
bash scripts/ci/install-tools.sh deploy >/dev/null
bash scripts/ci/check-deploy.sh
cargo test --release
# The device kit (docs/gpu-kit.md) as it would be carried: kit.sh, then check.sh --cpu from a copy.
bash scripts/gpu/dry-run.sh
