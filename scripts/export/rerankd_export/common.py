"""What every step of the export shares: the error type, the log, the parity tolerance, paths.

Owns: ExportError (the one failure cli.py turns into exit status 1), the stderr log's prefix, TOL.
Must never: import torch, transformers or another module of the package (everything imports this).
"""

import json
import os
import sys

# Largest |difference| allowed between TorchScript and eager scores (and sentence-transformers').
TOL = 1e-4

# The repository root (or the device kit's root, where the same layout is copied): paths under it are
# written relative to it, so rerankd.json does not name the machine's folders.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class ExportError(Exception):
    """A reason to refuse the export; cli.py prints it and exits with status 1."""


def log(msg):
    print(f"export_model: {msg}", file=sys.stderr, flush=True)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def display_path(path):
    path = os.path.abspath(path)
    if path.startswith(REPO_ROOT + os.sep):
        return os.path.relpath(path, REPO_ROOT)
    return path
