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
cargo fmt --all --check
cargo clippy --release --all-targets --workspace -- -D warnings
bash scripts/ci/install-tools.sh deploy >/dev/null
bash scripts/ci/check-deploy.sh
cargo test --release --workspace
# The bench is a client that builds without libtorch: neither libtorch nor the server crate in
# its dependency tree, and it builds with the venv off PATH and no libtorch variable set.
BENCH_TREE="$(cargo tree -p rerankd-bench -e normal,build --prefix none)"
if grep -E '^(tch|torch-sys|rerankd) v' <<<"$BENCH_TREE"; then
  echo "test.sh: rerankd-bench depends on the above; it must build without libtorch" >&2
  exit 1
fi
PATH_WITHOUT_VENV="$(tr ':' '\n' <<<"$PATH" | grep -vxF "$RERANKD_VENV/bin" | paste -sd: -)"
env -u LIBTORCH_USE_PYTORCH -u LIBTORCH -u LD_LIBRARY_PATH -u RERANKD_VENV -u VIRTUAL_ENV \
  PATH="$PATH_WITHOUT_VENV" cargo build --release -p rerankd-bench
# The device kit (docs/gpu-kit.md) as it would be carried: kit.sh, then check.sh --cpu from a copy.
bash scripts/gpu/dry-run.sh
# The 2-minute soak (RELIABILITY.md, "Soak"): the whole API mixed at 70% of the measured peak on
# the tiny test model; fails on any unexpected status or gross RSS growth.
bash scripts/bench/soak.sh --ci
