#!/usr/bin/env python3
"""Turns what check.sh left in its work folder into the kit's output folder (at most 8 files):

    summary.json   every figure, the machine, versions, each check's status (pass / fail: why / ran /
                   skipped: why / error: why) and the targets
    bench.json     every `rerankd bench` JSON of the run, by name
    throughput.svg, squeeze.svg, squeeze-cold.svg
                   the bench plots (budget, batch size, free memory, OOMs over time)
    check.log      check.sh's own log, then each server's log (each cut to its last 3 MiB)

    summarize.py --work DIR --out DIR --mode gpu|cpu --kit DIR [--final-rc N]
    summarize.py --assert-dry-run SUMMARY.json     (CI: the CPU dry run's expected checks ran and passed)

Owns: the shape of summary.json, the FLOPs and MFU arithmetic, and every pass/fail rule except the
fidelity and NVML ones (fidelity.py, devinfo.py). Must never: run anything on the device; it only reads
files, so it also runs after a failed or interrupted check.
"""
import argparse
import glob
import json
import os
import re
import shutil
import sys
import time

PEAK_FLOPS = 790e12  # measured dense fp16/bf16 peak of the H200 we are lent (issue 13)
TARGET_RATIO = 0.95
TARGET_MFU = 0.50
LOG_TAIL_BYTES = 3 << 20
CHECKS = ("1_nvml_and_startup", "2_fidelity", "3_throughput", "4_squeeze", "5_precision_and_graph")
# What the CPU dry run must show (CI asserts it): the checks that can run without a GPU ran and passed.
DRY_RUN_MUST_RUN = ("1_nvml_and_startup", "2_fidelity", "3_throughput", "5_precision_and_graph")
DRY_RUN_MUST_SKIP = ("4_squeeze",)


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_lines(path, text=None):
    """The JSON objects of a JSON-lines file; other non-empty lines go to `text` when given."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        if text is not None:
                            text.append(line)
    except OSError:
        pass
    return out


# ---- FLOPs -----------------------------------------------------------------------------------------


def flops_per_pair(config, tokens):
    """Forward FLOPs of one pair of `tokens` tokens for a BERT / XLM-R encoder with a one-logit head.

    2 x (encoder parameters without embeddings) x tokens for the matrix products, plus attention's two
    batched products (QK^T and AV): 2 x 2 x layers x tokens^2 x hidden, plus the head on one token.
    """
    h = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    inter = int(config["intermediate_size"])
    per_layer = (4 * h * h + 4 * h) + (2 * h * inter + inter + h) + 4 * h  # attention, FFN, two LayerNorms
    params = layers * per_layer
    head = h * h + h + h + 1
    dense = 2 * params * tokens
    attention = 4 * layers * tokens * tokens * h
    return {
        "tokens": tokens,
        "params_nonembedding": params,
        "dense_flops": dense,
        "attention_flops": attention,
        "head_flops": 2 * head,
        "flops_per_pair": dense + attention + 2 * head,
        "formula": "2 x params_nonembedding x tokens + 4 x layers x tokens^2 x hidden + 2 x head params",
    }


# ---- server logs -----------------------------------------------------------------------------------

SOME = re.compile(r"^Some\((.*)\)$")
BACKTRACE = re.compile(r"^(\d+: |at )")


def debug_value(v):
    """`Some(1.5e-6)` -> 1.5e-6, `None` -> None; other values as they are."""
    if isinstance(v, str):
        if v == "None":
            return None
        m = SOME.match(v)
        if m:
            inner = m.group(1)
            try:
                return float(inner)
            except ValueError:
                return inner
    return v


def startup_report(log_path):
    """What a server said about itself at start-up (rerankd --log-format json)."""
    report = {"log": os.path.basename(log_path), "loaded": [], "calibration": [], "warnings": [], "errors": []}
    text = []
    lines = read_lines(log_path, text)
    # What the binary printed outside its JSON log (a start-up failure's message, a panic).
    report["text"] = [t for t in text if not BACKTRACE.match(t)][:10]
    for line in lines:
        fields = line.get("fields") or {}
        msg = fields.get("message", "")
        level = line.get("level", "")
        rest = {k: debug_value(v) for k, v in fields.items() if k != "message"}
        if "warmed up" in msg:
            report["loaded"].append(rest)
        elif "per padded token" in msg:
            report["calibration"].append({"message": msg, "level": level, **rest})
        if level in ("WARN", "ERROR") and "per padded token" not in msg:
            target = report["warnings"] if level == "WARN" else report["errors"]
            if len(target) < 20:
                target.append({"message": msg, **rest})
    loaded = report["loaded"][0] if report["loaded"] else {}
    cal = report["calibration"][0] if report["calibration"] else {}
    report["precision"] = {"requested": loaded.get("requested_dtype"), "serving": loaded.get("dtype"),
                           "fp32_vs_golden": loaded.get("fp32_vs_golden"),
                           "lowered_vs_fp32": loaded.get("lowered_vs_fp32"),
                           "golden_pairs_compared": loaded.get("golden_pairs_compared"),
                           "graph_optimization": loaded.get("graph_optimization"),
                           "fallbacks": [w for w in report["warnings"] if "fp32" in w.get("message", "")]}
    report["bytes_per_token"] = cal.get("bytes_per_token") if cal.get("level") != "WARN" else None
    report["calibration_assumed"] = bool(cal) and cal.get("level") == "WARN"
    return report


# ---- bench -----------------------------------------------------------------------------------------


def bench_figures(doc):
    if not doc:
        return None
    s = doc.get("summary", {})
    pairs = s.get("pairs") or 0
    return {
        "served": doc.get("model"),
        "pairs_per_second": s.get("pairs_per_second"),
        "requests": s.get("requests"),
        "failed": s.get("failed"),
        "failures": s.get("failures"),
        "pairs": pairs,
        "mean_tokens_per_pair": round(s.get("tokens", 0) / pairs, 1) if pairs else None,
        "mean_pairs_per_batch": s.get("mean_pairs_per_batch"),
        "oom_count": s.get("oom_count"),
        "splits": s.get("splits"),
        "busy_share": s.get("busy_share"),
        "latency_ms": s.get("latency_ms"),
        "duration_secs": s.get("duration_secs"),
    }


def squeeze_figures(doc, timeline, batch_cap_tokens, start_epoch=None, before_tokens=None):
    """The budget through a squeeze. A budget above the largest batch the server may cut
    (--max-batch-pairs x the window) changes nothing, so the rules read the effective budget,
    min(budget, that cap): `follows_down` when it went below 90% of where it was while memory was
    taken, `recovers` when it ended at 90% or more of it again. `before_tokens` stands for "where it
    was" when the bench began already squeezed (the cold squeeze: the cap)."""
    series = (doc or {}).get("series") or []
    points = [(p["t_secs"], p["devices"][0]) for p in series if p.get("devices")]
    if not points:
        return {"error": "the squeeze bench recorded no Stats samples"}
    cap = batch_cap_tokens or float("inf")
    free_max = max(d.get("free_bytes", 0) for _t, d in points)
    squeezed = [i for i, (_t, d) in enumerate(points) if d.get("free_bytes", 0) < 0.5 * free_max]
    budgets = [min(d.get("budget_tokens", 0), cap) for _t, d in points]
    first = squeezed[0] if squeezed else len(points)
    before = before_tokens or max(budgets[:first] or budgets[:1])
    during = min(budgets[i] for i in squeezed) if squeezed else None
    after = budgets[-1]
    recovered_at = None
    if squeezed:
        for i in range(squeezed[-1] + 1, len(points)):
            if budgets[i] >= 0.9 * before:
                recovered_at = points[i][0]
                break
    released = [e["t"] for e in (timeline or {}).get("events", []) if e.get("phase") == "release"]
    pairs = [d.get("pairs_per_batch") for _t, d in points]
    return {
        "samples": len(points),
        "free_bytes_start": points[0][1].get("free_bytes"),
        "free_bytes_min": min(d.get("free_bytes", 0) for _t, d in points),
        "squeezed_samples": len(squeezed),
        "batch_cap_tokens": batch_cap_tokens,
        "budget_tokens_raw_start": points[0][1].get("budget_tokens"),
        "budget_tokens_before": before,
        "budget_tokens_min_squeezed": during,
        "budget_tokens_end": after,
        "budget_note": "effective budgets: min(budget, --max-batch-pairs x window)",
        "max_pairs_per_batch_squeezed": max((pairs[i] or 0 for i in squeezed), default=None),
        "max_pairs_per_batch_after": max((p or 0 for p in pairs[first + len(squeezed):]), default=None),
        "follows_down": during is not None and during < 0.9 * before,
        "recovers": after >= 0.9 * before,
        "recovered_secs_after_release_began": round(recovered_at - (released[0] - start_epoch), 1)
        if recovered_at is not None and released and start_epoch else None,
        "oom_count_end": points[-1][1].get("oom_count"),
        "splits_end": points[-1][1].get("splits"),
        "squeezer": {k: v for k, v in (timeline or {}).items() if k != "events"},
        "squeezer_events": (timeline or {}).get("events", []),
    }


def batch_cap(server, doc):
    """--max-batch-pairs x the window for the server a bench ran against, when both are known."""
    m = re.search(r"--max-batch-pairs (\d+)", (server or {}).get("flags", ""))
    window = ((doc or {}).get("model") or {}).get("max_length")
    return int(m.group(1)) * int(window) if m and window else None


def clock_windows(steps):
    """Median SM clock and power, hottest temperature and the throttle reasons seen, between each
    "NAME start" and "NAME end" mark (devinfo.py clocks; GPU only)."""
    rows = [r for r in read_lines(os.path.join(steps, "clocks.jsonl")) if "t" in r]
    marks = {m["mark"]: m["t"] for m in read_lines(os.path.join(steps, "marks.jsonl"))}
    out = {}
    for name, start in marks.items():
        if not name.endswith(" start"):
            continue
        base = name[: -len(" start")]
        end = marks.get(base + " end")
        inside = [r for r in rows if end and start <= r["t"] <= end]
        if not inside:
            continue

        def median(key, inside=inside):
            vals = sorted(r[key] for r in inside if isinstance(r.get(key), (int, float)))
            return vals[len(vals) // 2] if vals else None

        throttle = 0
        for r in inside:
            throttle |= int(r.get("throttle") or 0)
        out[base] = {"samples": len(inside), "secs": round(end - start, 1), "sm_mhz_median": median("sm_mhz"),
                     "power_w_median": median("power_w"), "util_median": median("util"),
                     "temp_c_max": max((r.get("temp_c") or 0 for r in inside), default=None),
                     "throttle_reasons_or": hex(throttle)}
    return out


# ---- the summary -----------------------------------------------------------------------------------


def status_of(record, fallback):
    if record is None:
        return fallback
    return record.get("status", fallback)


def build(work, mode, kit, final_rc):
    steps = os.path.join(work, "steps")
    skips = {r["check"]: r["why"] for r in read_lines(os.path.join(steps, "skips.jsonl"))}
    errors = read_lines(os.path.join(steps, "errors.jsonl"))
    meta = read_json(os.path.join(steps, "meta.json"), {})
    env = read_json(os.path.join(steps, "env.json"), {})
    servers = {}
    for log in sorted(glob.glob(os.path.join(work, "servers", "*.log"))):
        name = os.path.basename(log)[:-4]
        servers[name] = read_json(os.path.join(work, "servers", f"{name}.json"), {"name": name, "serving": False})
        servers[name]["startup"] = startup_report(log)
    benches = {os.path.basename(p)[:-5]: read_json(p) for p in sorted(glob.glob(os.path.join(work, "bench", "*.json")))}
    models = {
        os.path.basename(p)[:-5]: read_json(p, {}) for p in sorted(glob.glob(os.path.join(work, "models", "*.json")))
    }
    reference = read_json(os.path.join(steps, "reference.json"))
    sustained = read_json(os.path.join(steps, "reference-sustained.json"))
    marks = {m["mark"]: m["t"] for m in read_lines(os.path.join(steps, "marks.jsonl"))}
    large_cfg = read_json(meta.get("large_config", ""), None)
    gpu = mode == "gpu"

    def error_for(check):
        errs = [e for e in errors if e.get("check") == check]
        return f"error: {errs[0]['what']} (exit {errs[0]['rc']}; see check.log)" if errs else None

    def skipped_or(check, default):
        if check in skips:
            return f"skipped: {skips[check]}"
        return error_for(check) or default

    checks = {}

    # (1) NVML and the start-up report
    nvml = read_json(os.path.join(steps, "nvml.json"))
    main = servers.get("large-lowered") or {}
    su = main.get("startup") or {}
    mem = (reference or {}).get("memory", {}).get("slopes", {})
    bpt = su.get("bytes_per_token")
    c1 = {
        "nvml": nvml if nvml else {"status": skipped_or("1_nvml", "error: no NVML record")},
        "startup": {"server": main.get("name"), "dtype_asked": main.get("dtype"),
                    "serving_after_secs": main.get("serving_after_secs"), **{k: su.get(k) for k in (
                        "precision", "bytes_per_token", "calibration_assumed", "calibration", "warnings", "errors")}},
        "memory_per_padded_token": {
            "rerankd_calibrated_bytes": bpt,
            "python_reference_slopes_bytes": mem or None,
            "rerankd_over_allocated": round(bpt / mem["peak_allocated_per_padded_token"], 3)
            if bpt and mem.get("peak_allocated_per_padded_token") else None,
            "rerankd_over_reserved": round(bpt / mem["peak_reserved_per_padded_token"], 3)
            if bpt and mem.get("peak_reserved_per_padded_token") else None,
        },
    }
    reasons = []
    if not su.get("loaded"):
        reasons.append("no start-up report in the server log")
    if gpu:
        if not nvml or nvml.get("status") != "pass":
            reasons.append("NVML readings: " + status_of(nvml, "missing"))
        if bpt is None:
            reasons.append("calibration did not measure bytes per padded token" +
                           (" (the log says it assumed a default)" if su.get("calibration_assumed") else ""))
        if (su.get("precision") or {}).get("serving") != "fp16":
            reasons.append(f"serving {(su.get('precision') or {}).get('serving')} instead of fp16")
        c1["status"] = error_for("1_nvml_and_startup") or ("pass" if not reasons else "fail: " + "; ".join(reasons))
    else:
        c1["nvml"] = {"status": "skipped: no GPU (--cpu)"}
        c1["memory_per_padded_token"]["status"] = "skipped: no GPU (--cpu): rerankd calibrates on CUDA only"
        c1["status"] = error_for("1_nvml_and_startup") or ("ran" if not reasons else "fail: " + "; ".join(reasons))
    checks["1_nvml_and_startup"] = c1

    # (2) fidelity
    fid = read_json(os.path.join(steps, "fidelity.json"))
    checks["2_fidelity"] = fid if fid else {"status": skipped_or("2_fidelity", "error: no fidelity record")}

    # (3) throughput
    thr = bench_figures(benches.get("throughput"))
    best = (reference or {}).get("best")
    c3 = {"rerankd": thr, "python_reference": reference, "targets": {"ratio": TARGET_RATIO, "mfu": TARGET_MFU,
                                                                     "peak_flops": PEAK_FLOPS}}
    if thr and large_cfg:
        tokens = round(thr["mean_tokens_per_pair"] or 0)
        fl = flops_per_pair(large_cfg, tokens)
        c3["flops"] = fl
        c3["rerankd_mfu"] = float(f"{thr['pairs_per_second'] * fl['flops_per_pair'] / PEAK_FLOPS:.4g}")
        if best:
            ref_fl = flops_per_pair(large_cfg, reference["length"])
            c3["reference_mfu"] = float(f"{best['pairs_per_sec'] * ref_fl['flops_per_pair'] / PEAK_FLOPS:.4g}")
            c3["rerankd_over_reference"] = round(thr["pairs_per_second"] / best["pairs_per_sec"], 4)
        sbest = (sustained or {}).get("best")
        if sbest:
            # The baseline the target is judged against: the same batch, as long as the bench, right
            # after it (the sweep's 2 s windows run on a GPU that has not warmed up).
            c3["python_reference_sustained"] = {k: sustained.get(k) for k in ("what", "dtype", "length", "threads")}
            c3["python_reference_sustained"]["best"] = sbest
            flops = flops_per_pair(large_cfg, sustained["length"])["flops_per_pair"]
            c3["sustained_reference_mfu"] = float(f"{sbest['pairs_per_sec'] * flops / PEAK_FLOPS:.4g}")
            c3["rerankd_over_sustained_reference"] = round(thr["pairs_per_second"] / sbest["pairs_per_sec"], 4)
    c3["clocks"] = clock_windows(steps) or None
    reasons = []
    if not thr:
        reasons.append("no throughput bench")
    else:
        if thr["failed"]:
            reasons.append(f"{thr['failed']} failed requests")
        if not best:
            reasons.append("no Python reference")
    if gpu and not reasons:
        if (thr["served"] or {}).get("dtype") != "fp16":
            reasons.append(f"served {(thr['served'] or {}).get('dtype')}, not fp16")
        ratio_key = ("rerankd_over_sustained_reference" if "rerankd_over_sustained_reference" in c3
                     else "rerankd_over_reference")
        c3["ratio_judged"] = ratio_key
        if c3.get(ratio_key, 0) < TARGET_RATIO:
            reasons.append(f"rerankd {c3.get(ratio_key)} x the raw TorchScript rate ({ratio_key}) < {TARGET_RATIO}")
        if c3.get("rerankd_mfu", 0) < TARGET_MFU:
            reasons.append(f"MFU {c3.get('rerankd_mfu')} < {TARGET_MFU}")
    if not gpu:
        c3["targets"]["note"] = "targets apply on the GPU only; MFU against the H200's peak means nothing on a CPU"
    ok = "pass" if gpu else "ran"
    c3["status"] = skipped_or("3_throughput", ok if not reasons else "fail: " + "; ".join(reasons))
    checks["3_throughput"] = c3

    # (4) squeeze
    if gpu and "4_squeeze" not in skips and not error_for("4_squeeze"):
        # Warm: under steady load. The allocator's cache of the last batches is memory no other
        # process can take, so the batches need not shrink; what must hold is no failed request and an
        # effective budget back where it was. Cold: the server started on a crowded GPU under a load
        # wanting batches of up to the cap; the squeeze must have held the budget below 90% of the
        # cap, and once the memory is back it must grow to 90% of it, with no failed request.
        reasons = []
        c4 = {}
        for name, server, must_follow in (("squeeze", "large-lowered", False), ("squeeze-cold", "large-cold", True)):
            doc = benches.get(name)
            key = "warm" if name == "squeeze" else "cold"
            if not doc:
                if name == "squeeze-cold" and "4_squeeze_cold" in skips:
                    c4[key] = {"status": f"skipped: {skips['4_squeeze_cold']}"}
                else:
                    reasons.append(f"no {name} bench")
                continue
            timeline = read_json(os.path.join(steps, f"{name}-timeline.json"))
            cap = batch_cap(servers.get(server), doc)
            sq = squeeze_figures(doc, timeline, cap, marks.get(f"bench {name} start"),
                                 before_tokens=cap if must_follow else None)
            sqb = bench_figures(doc)
            c4[key] = {"bench": sqb, **sq}
            if sqb["failed"]:
                reasons.append(f"{name}: {sqb['failed']} failed requests")
            if must_follow and not sq.get("follows_down"):
                reasons.append(f"{name}: the budget did not go down while memory was taken")
            if not sq.get("recovers"):
                reasons.append(f"{name}: the budget did not grow back to 90% of where it was")
        c4["status"] = "pass" if not reasons else "fail: " + "; ".join(reasons)
    else:
        c4 = {"status": skipped_or("4_squeeze", "skipped: no GPU (--cpu)")}
    checks["4_squeeze"] = c4

    # (5) precision and graph optimisation
    c5 = {"lowered_graph_on": thr, "fp32": bench_figures(benches.get("fp32")),
          "lowered_graph_off": bench_figures(benches.get("graph-off")),
          "graph_optimization_flag": meta.get("graph_flag")}
    if thr and c5["fp32"] and c5["fp32"]["pairs_per_second"]:
        c5["lowered_over_fp32"] = round(thr["pairs_per_second"] / c5["fp32"]["pairs_per_second"], 3)
    if thr and c5["lowered_graph_off"] and c5["lowered_graph_off"]["pairs_per_second"]:
        c5["graph_on_over_off"] = round(thr["pairs_per_second"] / c5["lowered_graph_off"]["pairs_per_second"], 3)
    c5["lowered_default_batch"] = bench_figures(benches.get("default-batch"))
    if thr and c5["lowered_default_batch"] and c5["lowered_default_batch"]["pairs_per_second"]:
        c5["default_batch_over_tuned"] = round(
            c5["lowered_default_batch"]["pairs_per_second"] / thr["pairs_per_second"], 3)
    if "default-batch" in skips:
        c5["default_batch_status"] = f"skipped: {skips['default-batch']}"
    if "graph-off" in skips:
        c5["graph_off_status"] = f"skipped: {skips['graph-off']}"
    reasons = [f"{k}: {v['failed']} failed requests" for k, v in c5.items()
               if isinstance(v, dict) and v.get("failed")]
    if not c5["fp32"]:
        reasons.append("no fp32 bench")
    c5["status"] = skipped_or("5_precision_and_graph", "ran" if not reasons else "fail: " + "; ".join(reasons))
    checks["5_precision_and_graph"] = c5

    statuses = {k: v.get("status", "?") for k, v in checks.items()}
    if gpu:
        overall = "pass" if all(s in ("pass", "ran") for s in statuses.values()) else "fail"
    else:
        overall = "dry-run ok" if dry_run_problems(statuses) == [] else "dry-run failed"
    return {
        "what": "rerankd device kit (issue 13 section 3): scripts/gpu/check.sh",
        "mode": mode,
        "overall": overall,
        "statuses": statuses,
        "device": (env.get("gpu") or {}).get("name") if gpu else f"cpu: {env.get('cpu')}",
        "started": meta.get("started"),
        "elapsed_secs": round(time.time() - meta["started_epoch"], 1) if meta.get("started_epoch") else None,
        "budget_secs": meta.get("budget_secs"),
        "check_exit": final_rc,
        "kit": read_json(os.path.join(kit, "KIT.json"), {}),
        "environment": env,
        "models": models,
        "servers": {k: {**{kk: vv for kk, vv in v.items() if kk != "startup"},
                        "precision": v["startup"]["precision"], "startup_errors": v["startup"]["errors"],
                        "other_output": v["startup"]["text"]}
                    for k, v in servers.items()},
        "skipped": skips,
        "errors": errors,
        "checks": checks,
    }


def dry_run_problems(statuses):
    problems = []
    for check in DRY_RUN_MUST_RUN:
        if statuses.get(check) not in ("pass", "ran"):
            problems.append(f"{check}: {statuses.get(check)}")
    for check in DRY_RUN_MUST_SKIP:
        if not str(statuses.get(check, "")).startswith("skipped"):
            problems.append(f"{check}: {statuses.get(check)} (expected skipped)")
    return problems


def tail(path, limit):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size > limit:
            f.seek(size - limit)
            return b"[... cut: first %d bytes ...]\n" % (size - limit) + f.read()
        return f.read()


def write_out(work, out, summary):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    benches = {os.path.basename(p)[:-5]: read_json(p) for p in sorted(glob.glob(os.path.join(work, "bench", "*.json")))}
    if benches:
        with open(os.path.join(out, "bench.json"), "w") as f:
            json.dump(benches, f, indent=1)
    for name in ("throughput", "squeeze", "squeeze-cold"):
        svg = os.path.join(work, "bench", f"{name}.svg")
        if os.path.isfile(svg):
            shutil.copyfile(svg, os.path.join(out, f"{name}.svg"))
    with open(os.path.join(out, "check.log"), "wb") as f:
        for path in [os.path.join(work, "check.log")] + sorted(glob.glob(os.path.join(work, "servers", "*.log"))):
            if os.path.isfile(path):
                f.write(f"\n===== {os.path.relpath(path, work)} =====\n".encode())
                f.write(tail(path, LOG_TAIL_BYTES))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write the device kit's summary and output folder.")
    ap.add_argument("--work")
    ap.add_argument("--out")
    ap.add_argument("--mode", choices=["gpu", "cpu"])
    ap.add_argument("--kit")
    ap.add_argument("--final-rc", type=int, default=None)
    ap.add_argument("--assert-dry-run", metavar="SUMMARY")
    args = ap.parse_args(argv)
    if args.assert_dry_run:
        summary = read_json(args.assert_dry_run)
        if not summary:
            print(f"summarize: no summary at {args.assert_dry_run}", file=sys.stderr)
            return 1
        problems = dry_run_problems(summary.get("statuses", {}))
        if summary.get("mode") != "cpu":
            problems.append(f"mode is {summary.get('mode')}, expected cpu")
        if summary.get("errors"):
            problems.append(f"errors: {summary['errors']}")
        for p in problems:
            print(f"summarize: dry run: {p}", file=sys.stderr)
        if not problems:
            print(f"summarize: dry run ok: {json.dumps(summary['statuses'])}")
        return 1 if problems else 0
    summary = build(args.work, args.mode, args.kit, args.final_rc)
    write_out(args.work, args.out, summary)
    print(json.dumps({"overall": summary["overall"], "statuses": summary["statuses"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
