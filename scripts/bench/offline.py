#!/usr/bin/env python3
"""In-process contenders of the comparison (no server, no network): every pair of the workload's
`requests`, scored by

  raw     TorchScript model.pt through torch.jit.load (libtorch, the server's engine) on the pairs
          tokenized with the model folder's tokenizer.json (pair template, truncation only_second at
          max_length), sorted by length, cut into static batches of B, each padded to its longest;
          the timed part is tensor building + forward passes (tokenizing is reported apart).
          The best B is the "raw best static" baseline: what a perfect offline batcher gets.
  st      sentence-transformers CrossEncoder(hf_dir).predict(pairs, batch_size=B) (project venv).
  flag    FlagEmbedding FlagReranker(hf_dir, use_fp16=False).compute_score(pairs, batch_size=B);
          B "default" calls compute_score(pairs) as its docs show (batch_size 128).
          Mode flag-per-request: one compute_score(request's pairs) per request, one after another,
          as a naive Python service would (default batch size).

Each variant is timed once per invocation, after one untimed warm-up call on the first batch;
prints one JSON line per variant:
  {"contender", "variant", "batch_size", "pairs", "wall_s", "pairs_per_s", "scores0", ...}
scores0: the raw scores (logits) of the workload's first request, in document order, computed
outside the timed part, so that the comparison can check that every contender runs the same model.

Usage: offline.py raw|st|flag|flag-per-request --model DIR --workload FILE --batch-sizes 1,2,4
       [--threads T] [--reverse]   (DIR: the ts/ folder for raw, the hf/ folder for st and flag)
Threads: torch.set_num_threads(--threads, default: every core).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def emit(obj):
    print(json.dumps(obj), flush=True)


def pairs_of(workload):
    return [(r["query"], d) for r in workload["requests"] for d in r["documents"]]


def run_raw(args, wl, sizes):
    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    meta = json.load(open(os.path.join(args.model, "rerankd.json")))
    max_len = int(meta["max_length"])
    uses_tt = bool(meta.get("uses_token_type_ids"))
    pad_id = int(meta.get("pad_token_id", 0))
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_len, strategy="only_second")
    pairs = pairs_of(wl)
    t0 = time.perf_counter()
    encs = tok.encode_batch(pairs)
    tokenize_s = time.perf_counter() - t0
    rows = sorted(((e.ids, e.type_ids) for e in encs), key=lambda r: len(r[0]))
    real = sum(len(r[0]) for r in rows)

    model = torch.jit.load(os.path.join(args.model, "model.pt"), map_location="cpu")
    model.eval()

    def batch_tensors(chunk):
        n = max(len(r[0]) for r in chunk)
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        tt = torch.zeros((len(chunk), n), dtype=torch.long)
        for i, (a, t) in enumerate(chunk):
            ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
            mask[i, : len(a)] = 1
            tt[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return (ids, mask, tt) if uses_tt else (ids, mask)

    with torch.inference_mode():
        model(*batch_tensors(rows[:8]))  # first call after load is slow: warm up
        n0 = len(wl["requests"][0]["documents"])
        scores0 = [float(x) for x in model(*batch_tensors([(e.ids, e.type_ids) for e in encs[:n0]]))]
        for b in sizes:
            b = int(b)
            chunks = [rows[i : i + b] for i in range(0, len(rows), b)]
            padded = sum(len(c) * max(len(r[0]) for r in c) for c in chunks)
            model(*batch_tensors(chunks[len(chunks) // 2]))
            t0 = time.perf_counter()
            for c in chunks:
                model(*batch_tensors(c))
            wall = time.perf_counter() - t0
            emit({"contender": "raw", "variant": f"static {b}", "batch_size": b, "pairs": len(rows),
                  "wall_s": round(wall, 3), "pairs_per_s": round(len(rows) / wall, 2),
                  "padding_efficiency": round(real / padded, 4), "tokenize_s": round(tokenize_s, 3),
                  "threads": torch.get_num_threads(), "scores0": scores0})


def run_st(args, wl, sizes):
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(args.threads)
    import sentence_transformers

    model = CrossEncoder(args.model, device="cpu")
    pairs = pairs_of(wl)
    model.predict(pairs[:8], batch_size=8, show_progress_bar=False)
    n0 = len(wl["requests"][0]["documents"])
    scores0 = [float(x) for x in model.predict(pairs[:n0], activation_fn=torch.nn.Identity(), show_progress_bar=False)]
    for b in sizes:
        b = int(b)
        t0 = time.perf_counter()
        model.predict(pairs, batch_size=b, show_progress_bar=False)
        wall = time.perf_counter() - t0
        emit({"contender": "st", "variant": f"CrossEncoder batch {b}", "batch_size": b, "pairs": len(pairs),
              "wall_s": round(wall, 3), "pairs_per_s": round(len(pairs) / wall, 2),
              "threads": torch.get_num_threads(), "version": sentence_transformers.__version__,
              "max_length": getattr(model, "max_length", None), "scores0": scores0})


def run_flag(args, wl, sizes, per_request=False):
    import importlib.metadata

    import torch
    from FlagEmbedding import FlagReranker

    torch.set_num_threads(args.threads)
    model = FlagReranker(args.model, use_fp16=False, devices="cpu")
    version = importlib.metadata.version("FlagEmbedding")
    pairs = pairs_of(wl)
    model.compute_score(pairs[:8])
    n0 = len(wl["requests"][0]["documents"])
    scores0 = [float(x) for x in model.compute_score(pairs[:n0])]
    if per_request:
        t0 = time.perf_counter()
        for r in wl["requests"]:
            model.compute_score([(r["query"], d) for d in r["documents"]])
        wall = time.perf_counter() - t0
        emit({"contender": "flag", "variant": "FlagReranker default, one call per request", "batch_size": None,
              "pairs": len(pairs), "wall_s": round(wall, 3), "pairs_per_s": round(len(pairs) / wall, 2),
              "threads": torch.get_num_threads(), "version": version, "scores0": scores0})
        return
    for b in sizes:
        t0 = time.perf_counter()
        if b == "default":
            model.compute_score(pairs)
        else:
            model.compute_score(pairs, batch_size=int(b))
        wall = time.perf_counter() - t0
        variant = f"FlagReranker batch {b}" if b != "default" else "FlagReranker default (batch 128)"
        emit({"contender": "flag", "variant": variant,
              "batch_size": 128 if b == "default" else int(b), "pairs": len(pairs), "wall_s": round(wall, 3),
              "pairs_per_s": round(len(pairs) / wall, 2), "threads": torch.get_num_threads(), "version": version,
              "scores0": scores0})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["raw", "st", "flag", "flag-per-request"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--batch-sizes", default="32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reverse", action="store_true", help="run the batch sizes in reverse order")
    args = ap.parse_args()
    wl = json.load(open(args.workload))
    sizes = [s.strip() for s in args.batch_sizes.split(",") if s.strip()]
    if args.reverse:
        sizes.reverse()
    if args.mode == "raw":
        run_raw(args, wl, sizes)
    elif args.mode == "st":
        run_st(args, wl, sizes)
    else:
        run_flag(args, wl, sizes, per_request=args.mode == "flag-per-request")


if __name__ == "__main__":
    sys.exit(main())
