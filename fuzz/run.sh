#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (cargo fuzz, nightly toolchain) for a
# measured time, or minimises a target's corpus. Owns: the environment the
# targets need (libtorch from the venv, the test models' tokenizers) and
# where corpora live. Must never: install anything into the repository, or
# run in CI (CI replays fuzz/seeds/ on stable through `cargo test`).
#
# Usage:
#   bash fuzz/run.sh run TARGET SECONDS [libFuzzer flags...]
#   bash fuzz/run.sh cmin TARGET        (minimise fuzz/corpus/TARGET in place)
#   bash fuzz/run.sh build              (all targets)
# TARGET: request_path, queue or controller. Environment:
#   FUZZ_SANITIZER  address (default) or none
#   CARGO_FUZZ_BIN  folder holding cargo-fuzz (default: the cached install,
#                   `cargo install cargo-fuzz --root ~/.cache/rerankd/tools/cargo-fuzz`)
# The working corpus is fuzz/corpus/TARGET (not committed), grown from
# fuzz/seeds/TARGET (committed); crashes land in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/env.sh
source scripts/env.sh
RERANKD_TEST_MODELS="$(bash scripts/setup-models.sh | tail -n 1)"
export RERANKD_TEST_MODELS
export PATH="${CARGO_FUZZ_BIN:-$HOME/.cache/rerankd/tools/cargo-fuzz/bin}:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz/run.sh: cargo-fuzz is missing; install it with" \
    "cargo install cargo-fuzz --root ~/.cache/rerankd/tools/cargo-fuzz" >&2
  exit 1
fi
# The fuzz crate is a workspace of its own: start from the server's versions.
[[ -f fuzz/Cargo.lock ]] || cp Cargo.lock fuzz/Cargo.lock
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rerankd/target-fuzz}/cargo-fuzz"
# torch-sys gives the fuzz binaries no rpath (the server's build.rs does it
# for its own binaries only).
LIBTORCH_LIB="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$LIBTORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
FUZZ=(cargo +nightly fuzz)
BUILD_FLAGS=(--sanitizer "${FUZZ_SANITIZER:-address}" --target-dir "$TARGET_DIR")

case "${1:-}" in
  build)
    "${FUZZ[@]}" build "${BUILD_FLAGS[@]}"
    ;;
  run)
    target="$2"
    seconds="$3"
    shift 3
    mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
    "${FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 "$@"
    ;;
  cmin)
    "${FUZZ[@]}" cmin "${BUILD_FLAGS[@]}" "$2" "fuzz/corpus/$2"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
