#!/usr/bin/env python3
"""Fidelity of the device kit: the same real model served by two rerankd processes, one in a lowered
precision (fp16 on CUDA; on CPU bf16 where native, else fp32, which
proves only the plumbing) and one in fp32, asked the same query groups through ScorePairs.

    fidelity.py --lower ADDR --asked DTYPE --fp32 ADDR --out FILE.json [--extra-queries N] [--golden-only]

Groups: the exporter's golden groups (each query with its own documents), each golden query against
the pool of every golden document, and --extra-queries sentences of the test-tokenizer corpus against
the pool of golden documents and corpus sentences (without the query itself). Per group: Spearman's
rank correlation of the two servers' raw scores, whether the top document is the same, the overlap
of the top five, and the largest |difference|. Pass: every score finite, both servers serve what they
were asked to, median Spearman >= 0.99 and top-1 agreement >= 95% of the groups.

Owns: measurement (2) of the kit and its pass rule. Must never: start or stop servers (check.sh does).
"""
import argparse
import json
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "export"))  # the exporter, beside gpu/

import rpc  # noqa: E402
from rank_stats import spearman  # noqa: E402

MIN_MEDIAN_SPEARMAN = 0.99
MIN_TOP1_AGREEMENT = 0.95


def groups(extra_queries, golden_only=False):
    from make_test_tokenizer import CORPUS
    from rerankd_export.golden_set import GOLDEN_GROUPS  # the exporter's golden set (English, varied lengths)

    out = [(f"golden {i}", g["query"], list(g["documents"])) for i, g in enumerate(GOLDEN_GROUPS)]
    if golden_only:
        return out
    golden_pool = [d for g in GOLDEN_GROUPS for d in g["documents"]]
    out += [(f"golden {i} vs pool", g["query"], golden_pool) for i, g in enumerate(GOLDEN_GROUPS)]
    corpus = [s for s in CORPUS if s not in golden_pool]
    for i, q in enumerate(corpus[:extra_queries]):
        out.append((f"corpus {i}", q, golden_pool + [s for s in corpus if s != q]))
    return out


def top(values, k):
    return sorted(range(len(values)), key=lambda i: -values[i])[:k]


def main(argv=None):
    ap = argparse.ArgumentParser(description="fp16/bf16 vs fp32 rank agreement through two rerankd servers.")
    ap.add_argument("--lower", required=True, help="address of the server in the lowered precision")
    ap.add_argument("--asked", required=True, help="the precision the lowered server was asked for")
    ap.add_argument("--fp32", required=True, help="address of the fp32 server")
    ap.add_argument("--extra-queries", type=int, default=24)
    ap.add_argument("--golden-only", action="store_true", help="only the golden groups (a short dry run)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    lower, full = rpc.Client(args.lower), rpc.Client(args.fp32)
    info_lower, info_full = lower.model_info(), full.model_info()
    per_group, worst, diffs, finite = [], 0.0, [], True
    for name, query, docs in groups(args.extra_queries, args.golden_only):
        pairs = [(query, d) for d in docs]
        a = lower.score_pairs(pairs)
        b = full.score_pairs(pairs)
        finite = finite and all(math.isfinite(x) for x in a + b)
        d = [abs(x - y) for x, y in zip(a, b, strict=True)]
        diffs.extend(d)
        worst = max(worst, max(d))
        per_group.append({
            "group": name,
            "documents": len(docs),
            "spearman": round(spearman(a, b), 5),
            "top1_same": top(a, 1) == top(b, 1),
            "top5_overlap": len(set(top(a, 5)) & set(top(b, 5))) / min(5, len(docs)),
            "max_abs_diff": float(f"{max(d):.3g}"),
        })
    rhos = [g["spearman"] for g in per_group if not math.isnan(g["spearman"])]
    top1 = sum(g["top1_same"] for g in per_group) / len(per_group)
    summary = {
        "groups": len(per_group),
        "pairs": len(diffs),
        "median_spearman": round(statistics.median(rhos), 5) if rhos else None,
        "min_spearman": round(min(rhos), 5) if rhos else None,
        "top1_agreement": round(top1, 4),
        "mean_top5_overlap": round(statistics.fmean(g["top5_overlap"] for g in per_group), 4),
        "max_abs_diff": float(f"{worst:.3g}"),
        "mean_abs_diff": float(f"{statistics.fmean(diffs):.3g}"),
    }
    served_as_asked = info_full["dtype"] == "fp32" and info_lower["dtype"] == args.asked
    reasons = []
    if not finite:
        reasons.append("non-finite scores")
    if not served_as_asked:
        reasons.append(f"served {info_lower['dtype']} and {info_full['dtype']} (the golden gate may have fallen back)")
    if not rhos or summary["median_spearman"] < MIN_MEDIAN_SPEARMAN:
        reasons.append(f"median Spearman {summary['median_spearman']} < {MIN_MEDIAN_SPEARMAN}")
    if top1 < MIN_TOP1_AGREEMENT:
        reasons.append(f"top-1 agreement {top1:.3f} < {MIN_TOP1_AGREEMENT}")
    status = "pass" if not reasons else "fail: " + "; ".join(reasons)
    if status == "pass" and args.asked == "fp32":
        status = "ran"  # fp32 against fp32 proves the plumbing only (a CPU without native bf16)
    result = {
        "status": status,
        "asked": args.asked,
        "how": "through rerankd: two servers of the same model (ScorePairs, raw scores), lowered precision vs fp32",
        "model": info_full["name"],
        "lower": {"addr": args.lower, "dtype": info_lower["dtype"], "device": info_lower["device"]},
        "fp32": {"addr": args.fp32, "dtype": info_full["dtype"], "device": info_full["device"]},
        "thresholds": {"min_median_spearman": MIN_MEDIAN_SPEARMAN, "min_top1_agreement": MIN_TOP1_AGREEMENT},
        "summary": summary,
        "per_group": per_group,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"status": result["status"], **summary}))
    lower.close()
    full.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
