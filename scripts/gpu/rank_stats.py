"""Rank statistics shared by the device kit's fidelity check and the CPU comparison's bf16 fidelity.

Owns: average ranks with ties and Spearman's rho. Must never: import anything beyond the standard
library (the kit carries this file to a machine with only the device's own Python).
"""

import math
import statistics


def ranks(values):
    """Average ranks (0-based), ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b, degenerate=float("nan")):
    """Spearman's rho of two equal-length lists; `degenerate` when either is constant."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra))
    vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va > 0 and vb > 0 else degenerate
