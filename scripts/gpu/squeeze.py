#!/usr/bin/env python3
"""The squeeze of the device kit: a second process that takes GPU memory away from rerankd and gives
it back, while `rerankd bench` keeps the server busy.

    squeeze.py --out FILE.json [--device cuda:0] [--leave-gib 2] [--step-gib 8] [--step-secs 0.5]
               [--hold-secs 15] [--release-steps 4] [--ready-file FILE] [--release-file FILE]

Takes memory with torch.empty in steps of --step-gib (smaller as it nears the goal) every --step-secs,
until the driver reports about --leave-gib free; holds it --hold-secs, topping up when rerankd frees
memory; then releases it in --release-steps steps. --ready-file is created once the memory is taken
(the hold begins), for a caller that starts its load then; the hold ends early once --release-file
exists (--hold-secs is then the longest it holds). Every step is recorded with the wall-clock time
(time.time(), to line up with the bench's samples), what is held and the driver's free memory. An
allocation that fails (rerankd got there first) is recorded and the step shrinks; it is not an error.

Owns: the squeezing process's own memory. Must never: touch rerankd, or take the last --leave-gib.
"""
import argparse
import json
import os
import sys
import time

import torch

GIB = 1 << 30
MIB = 1 << 20


def main(argv=None):
    ap = argparse.ArgumentParser(description="Take GPU memory in steps, hold, release.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--leave-gib", type=float, default=2.0)
    ap.add_argument("--step-gib", type=float, default=8.0)
    ap.add_argument("--step-secs", type=float, default=0.5)
    ap.add_argument("--hold-secs", type=float, default=15.0)
    ap.add_argument("--release-steps", type=int, default=4)
    ap.add_argument("--ready-file")
    ap.add_argument("--release-file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    torch.cuda.init()
    leave = int(args.leave_gib * GIB)
    chunks = []
    events = []

    def held():
        return sum(c.numel() for c in chunks)

    def record(phase, note=""):
        free, total = torch.cuda.mem_get_info(device)
        events.append({"t": round(time.time(), 3), "phase": phase, "held_bytes": held(), "free_bytes": free,
                       "total_bytes": total, "note": note})
        return free

    def take(deadline):
        step = int(args.step_gib * GIB)
        failures = 0
        free = record("take")
        while free - leave > 64 * MIB and time.time() < deadline and failures < 5:
            want = min(step, free - leave)
            try:
                chunks.append(torch.empty(want, dtype=torch.uint8, device=device))
                torch.cuda.synchronize(device)
                failures = 0
            except torch.OutOfMemoryError:
                step = max(step // 2, 64 * MIB)
                failures += 1
                note = f"allocation of {want} bytes failed"
            else:
                note = ""
            time.sleep(args.step_secs)  # pacing of the squeeze (what is measured), not synchronisation
            free = record("take", note)

    start = time.time()
    record("start")
    take(start + 60.0)
    if args.ready_file:
        open(args.ready_file, "w").close()
    hold_end = time.time() + args.hold_secs
    while time.time() < hold_end and not (args.release_file and os.path.exists(args.release_file)):
        time.sleep(0.5)  # pacing: one reading every half second while holding
        free = record("hold")
        if free - leave > 256 * MIB:
            take(hold_end)
    n = len(chunks)
    per_step = max(1, -(-n // max(args.release_steps, 1)))
    while chunks:
        del chunks[-per_step:]
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        record("release")
        time.sleep(args.step_secs * 2)  # pacing of the release
    record("end")
    frees = [e["free_bytes"] for e in events if e["phase"] in ("take", "hold")]
    result = {
        "device": torch.cuda.get_device_name(device),
        "leave_bytes": leave,
        "started": round(start, 3),
        "ended": round(time.time(), 3),
        "max_held_bytes": max(e["held_bytes"] for e in events),
        "min_free_bytes": min(frees) if frees else None,
        "events": events,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "events"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
