#!/usr/bin/env python3
"""The raw-libtorch reference for the device kit: the exported TorchScript run from Python at static
batch sizes, and (on CUDA) its memory per padded token.

    reference.py --model DIR --device cuda|cpu --dtype fp16|bf16|fp32 --out FILE.json
                 [--length 512] [--batches 8,16,32,64,128,256] [--secs 2] [--threads N]
                 [--memory-batches 1,2,4,8,16,32]

Throughput: every row is `--length` tokens (no padding), inputs already on the device, forward under
no_grad, the model's floating-point parameters cast to --dtype exactly as rerankd casts them (the int64
buffers stay int64), libtorch's default graph executor (as rerankd runs it). Each batch size gets three
warm-up calls (the profiling executor optimises after its profiling runs) and then as many timed calls
as fit in --secs (at least three), each ended by a device synchronize. The sweep stops at the first
out-of-memory or once two sizes in a row fall short of the best by more than 3%.

Memory (CUDA only): for each --memory-batches size at --length, after emptying the cache, the peak of
torch.cuda.max_memory_allocated (and of memory_reserved, and the drop of the driver's free memory)
above what was allocated before the call; the least-squares slope over padded tokens is the reference
for rerankd's calibrated bytes per padded token.

Owns: the Python side of measurements (3) and (1) of the kit. Must never: touch rerankd or its
process, or allocate beyond one forward pass of the largest batch it is asked for.
"""
import argparse
import json
import os
import sys
import time

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load(model_dir, device, dtype):
    meta = json.load(open(os.path.join(model_dir, "rerankd.json")))
    module = torch.jit.load(os.path.join(model_dir, "model.pt"), map_location=device)
    module.eval()
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.data = p.data.to(dtype)
    vocab = len(json.load(open(os.path.join(model_dir, "tokenizer.json")))["model"]["vocab"])
    return module, meta, vocab


def inputs(meta, vocab, batch, length, device, gen):
    ids = torch.randint(5, max(vocab, 6), (batch, length), generator=gen, dtype=torch.int64)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    args = [ids.to(device), mask.to(device)]
    if meta.get("uses_token_type_ids"):
        args.append(torch.zeros_like(ids).to(device))
    return args


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def is_oom(e):
    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


def throughput(module, meta, vocab, device, length, batches, secs):
    gen = torch.Generator().manual_seed(0)
    rows, best = [], None
    short = 0
    for b in batches:
        try:
            args = inputs(meta, vocab, b, length, device, gen)
            with torch.no_grad():
                for _ in range(3):
                    out = module(*args)
                sync(device)
                calls, start = 0, time.perf_counter()
                while calls < 3 or time.perf_counter() - start < secs:
                    out = module(*args)
                    sync(device)
                    calls += 1
                elapsed = time.perf_counter() - start
            if not torch.isfinite(out.float()).all():
                rows.append({"batch": b, "error": "non-finite scores"})
                break
        except RuntimeError as e:
            rows.append({"batch": b, "error": ("out of memory: " if is_oom(e) else "") + str(e).splitlines()[0][:300]})
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            break
        rate = b * calls / elapsed
        rows.append({"batch": b, "calls": calls, "secs": round(elapsed, 3), "pairs_per_sec": round(rate, 2)})
        if best is None or rate > best["pairs_per_sec"]:
            best, short = rows[-1], 0
        elif rate < 0.97 * best["pairs_per_sec"]:
            short += 1
            if short >= 2:
                break
    return rows, best


def memory(module, meta, vocab, device, length, batches):
    gen = torch.Generator().manual_seed(1)
    points = []
    for b in batches:
        args = inputs(meta, vocab, b, length, device, gen)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        alloc0 = torch.cuda.memory_allocated()
        res0 = torch.cuda.memory_reserved()
        free0, _total = torch.cuda.mem_get_info()
        try:
            with torch.no_grad():
                module(*args)
            torch.cuda.synchronize()
        except RuntimeError as e:
            points.append({"batch": b, "error": str(e).splitlines()[0][:300]})
            break
        free1, _total = torch.cuda.mem_get_info()
        points.append({
            "batch": b,
            "padded_tokens": b * length,
            "peak_allocated_bytes": torch.cuda.max_memory_allocated() - alloc0,
            "peak_reserved_bytes": torch.cuda.max_memory_reserved() - res0,
            "driver_free_drop_bytes": free0 - free1,
        })
        del args
    fits = {}
    good = [p for p in points if "error" not in p]
    if len(good) >= 2:
        for key in ("peak_allocated_bytes", "peak_reserved_bytes", "driver_free_drop_bytes"):
            xs = [p["padded_tokens"] for p in good]
            ys = [p[key] for p in good]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
            fits[key.replace("_bytes", "_per_padded_token")] = round(slope, 1)
    return points, fits


def main(argv=None):
    ap = argparse.ArgumentParser(description="TorchScript reference throughput and memory per padded token.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--batches", default="8,16,32,64,128,256")
    ap.add_argument("--memory-batches", default="1,2,4,8,16,32")
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device
    t0 = time.time()
    module, meta, vocab = load(args.model, device, DTYPES[args.dtype])
    length = min(args.length, int(meta["max_length"]))
    batches = [int(x) for x in args.batches.split(",") if x]
    rows, best = throughput(module, meta, vocab, device, length, batches, args.secs)
    result = {
        "what": "TorchScript from Python (torch.jit.load), static batches, no padding, default graph executor",
        "model": meta.get("name"),
        "device": device,
        "dtype": args.dtype,
        "length": length,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "throughput": rows,
        "best": best,
    }
    if device.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name(torch.device(device))
        mem_batches = [int(x) for x in args.memory_batches.split(",") if x]
        if mem_batches:  # empty: throughput only (the sustained run after rerankd's bench)
            points, fits = memory(module, meta, vocab, device, length, mem_batches)
            result["memory"] = {"points": points, "slopes": fits}
    result["secs"] = round(time.time() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({"best": best, "memory_slopes": result.get("memory", {}).get("slopes")}))
    return 0 if best else 1


if __name__ == "__main__":
    sys.exit(main())
