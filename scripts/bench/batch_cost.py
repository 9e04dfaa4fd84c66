#!/usr/bin/env python3
"""Cost of one forward pass of a TorchScript model against its shape: milliseconds per batch
and microseconds per padded token, for batch × length shapes from 16 to 4,096 tokens. The
figures behind BENCHMARKS.md's per-token cost curve and --batch-overhead-tokens' CPU default
(a forward pass costs about 14 ms plus 0.28 ms a token for MiniLM-L6 on 2 cores).

Usage: batch_cost.py MODEL_DIR/model.pt   (run with the project venv's python; it takes
about a minute). Shapes are timed in one order: run it twice and keep what repeats.
"""
import sys
import time

import torch

torch.set_grad_enabled(False)
model = torch.jit.load(sys.argv[1]).eval()


def timed(batch, length, reps):
    ids = torch.randint(1000, 20000, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    types = torch.zeros(batch, length, dtype=torch.long)
    for _ in range(2):
        model(ids, mask, types)
    start = time.perf_counter()
    for _ in range(reps):
        model(ids, mask, types)
    return (time.perf_counter() - start) / reps


print("batch length tokens ms_per_batch us_per_token")
SHAPES = [(1, 16), (1, 32), (1, 64), (2, 32), (1, 128), (2, 64), (4, 32), (1, 256), (2, 128), (4, 64),
          (8, 32), (4, 128), (8, 64), (2, 256), (8, 128), (16, 64), (4, 256), (16, 128), (32, 64),
          (8, 256), (32, 128)]
for batch, length in SHAPES:
    seconds = timed(batch, length, max(3, 2000 // (batch * length)))
    tokens = batch * length
    print(batch, length, tokens, round(seconds * 1000, 2), round(seconds * 1e6 / tokens, 1), flush=True)
