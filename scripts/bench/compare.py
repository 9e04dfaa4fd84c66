#!/usr/bin/env python3
"""Runs the side-by-side comparison that scripts/bench/compare.sh sets up, and prints one table.

Not meant to be run by hand: scripts/bench/compare.sh prepares the venvs, the model, the workload
and the ONNX export, then calls this with their paths in BENCH_* environment variables (a path that
could not be made comes with BENCH_*_ERROR instead, and the contenders that need it are reported
as not run, with that reason). Knobs are the RERANKD_BENCH_* variables documented in
scripts/bench/compare.sh.

Each contender ("unit") runs for a fixed amount of work per round; rounds are interleaved
(A B C ... A B C ...), and the best round per contender is kept (its pairs/s and latencies); the
table also shows every round's pairs/s so the spread is visible.
"""
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts", "gpu"))
import rank_stats  # noqa: E402

# The rerankd servers started here serve gRPC only: their HTTP API's default
# port (0.0.0.0:8080) would be shared by several at once. An environment
# variable, which binaries from before the HTTP API ignore, not a flag.
os.environ["RERANKD_HTTP_ADDR"] = "off"


def env(name, default=None):
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def ints(s):
    return [int(x) for x in str(s).split(",") if x.strip()]


CFG = {
    "pairs": int(env("RERANKD_BENCH_PAIRS", 512)),
    "clients": int(env("RERANKD_BENCH_CLIENTS", 16)),
    "rounds": int(env("RERANKD_BENCH_ROUNDS", 2)),
    "passes": float(env("RERANKD_BENCH_PASSES", 1)),
    "raw_sizes": ints(env("RERANKD_BENCH_RAW_SIZES", "1,2,4,8,16,32,64,128")),
    "py_sizes": ints(env("RERANKD_BENCH_PY_SIZES", "8,32,128")),
    "static_sizes": ints(env("RERANKD_BENCH_STATIC_SIZES", "8,16,32,64")),
    "threads": int(env("RERANKD_BENCH_THREADS", os.cpu_count())),
    "only": [x for x in env("RERANKD_BENCH_ONLY", "").split(",") if x],
    "skip": [x for x in env("RERANKD_BENCH_SKIP", "").split(",") if x],
    "unit_timeout": float(env("RERANKD_BENCH_UNIT_TIMEOUT", 900)),
    "bf16_passes": float(env("RERANKD_BENCH_BF16_PASSES", 0.25)),
}
P = {k: env(k) for k in [
    "BENCH_PROJECT_PY", "BENCH_DRIVER_PY", "BENCH_FLAG_PY", "BENCH_FLAG_ERROR", "BENCH_INFINITY_PY",
    "BENCH_INFINITY_ERROR", "BENCH_MODEL_DIR", "BENCH_ONNX_DIR", "BENCH_ONNX_ERROR", "BENCH_ONNX_METHOD",
    "BENCH_FIDELITY_MODEL", "BENCH_FIDELITY_ERROR", "BENCH_BIN", "BENCH_BIN_ERROR", "BENCH_WORKLOAD",
    "BENCH_OUT", "BENCH_CACHE"]}
OUT = P["BENCH_OUT"]
LOGS = os.path.join(OUT, "logs")
os.makedirs(LOGS, exist_ok=True)
WL = json.load(open(P["BENCH_WORKLOAD"]))
N_REQ = len(WL["requests"])
TIMED_REQUESTS = max(1, round(N_REQ * CFG["passes"]))
TIMED_PAIRS_NOTE = f"{TIMED_REQUESTS} requests ({CFG['passes']:g} pass over {WL['pairs']} pairs)"


def has_flag(flag):
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("flags"):
                return flag in ln.split()
    except OSError:
        pass
    return False


NATIVE_BF16 = has_flag("avx512_bf16") or has_flag("amx_bf16")
# bf16 without native support is emulated and several times slower than fp32: those variants run a
# fraction of the workload (its first requests), once.
SLOW_BF16_REQUESTS = max(1, round(N_REQ * CFG["bf16_passes"]))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=6):
    try:
        with open(path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if ln.strip()]
        return " | ".join(lines[-n:])[-900:]
    except OSError:
        return "(no log)"


def cpu_busy_s():
    """Seconds of CPU time spent by everything on the machine (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
        v = [int(x) for x in parts]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)  # user nice system irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


def own_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignMeter:
    """CPU used by processes that are not this comparison's (ours are our children, reaped), as a
    fraction of the machine, over an interval: other work on the machine distorts the timings."""

    def __init__(self):
        self.t, self.busy, self.own = time.time(), cpu_busy_s(), own_cpu_s()

    def fraction(self):
        busy = cpu_busy_s()
        if busy is None or self.busy is None:
            return None
        wall = time.time() - self.t
        other = (busy - self.busy) - (own_cpu_s() - self.own)
        return max(0.0, other / (wall * (os.cpu_count() or 1))) if wall > 0 else None


def wait_quiet():
    """Waits (up to RERANKD_BENCH_QUIET_WAIT s) until other processes use < 15% of the machine."""
    limit = float(env("RERANKD_BENCH_QUIET_WAIT", 120))
    t0 = time.time()
    while True:
        m = ForeignMeter()
        time.sleep(2)
        f = m.fraction()
        if f is None or f < 0.15 or time.time() - t0 > limit:
            if time.time() - t0 > 3:
                log(f"waited {time.time() - t0:.0f}s for other processes to calm down (now {f:.0%} of the CPU)")
            return f
        log(f"other processes use {f:.0%} of the CPU; waiting (up to {limit:.0f}s)")
        time.sleep(5)


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# Units: one process (offline) or one server + the load driver (online), per round.
# --------------------------------------------------------------------------------------------------


class Unit:
    def __init__(self, uid, group, label_of, unavailable=None, dtype="fp32", bf16=False):
        self.uid = uid          # e.g. "raw", "rerankd-default"
        self.group = group      # for RERANKD_BENCH_ONLY / SKIP
        self.label_of = label_of  # row key -> label
        self.unavailable = unavailable
        self.dtype = dtype      # the precision it runs in (rerankd: as ModelInfo reports)
        self.bf16 = bf16        # a bf16 variant: one round only on a CPU without native bf16
        self.one_round = False  # an informational extra: one round only

    def run(self, rnd):  # -> list of row dicts with "key", or raises RuntimeError(reason)
        raise NotImplementedError


class OfflineUnit(Unit):
    def __init__(self, uid, group, py, mode, model, sizes, label_of, unavailable=None):
        super().__init__(uid, group, label_of, unavailable)
        self.py, self.mode, self.model, self.sizes = py, mode, model, sizes

    def run(self, rnd):
        logf = os.path.join(LOGS, f"{self.uid}.r{rnd}.log")
        cmd = [self.py, os.path.join(HERE, "offline.py"), self.mode, "--model", self.model, "--workload",
               P["BENCH_WORKLOAD"], "--batch-sizes", ",".join(map(str, self.sizes)), "--threads",
               str(CFG["threads"])]
        if rnd % 2 == 1:
            cmd.append("--reverse")
        envv = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                    HF_HOME=os.path.join(P["BENCH_CACHE"], "hf-home"))
        with open(logf, "w") as lf:
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, text=True, env=envv,
                                   timeout=CFG["unit_timeout"])
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"timed out after {CFG['unit_timeout']:.0f}s (log {logf})") from None
        rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode != 0 and not rows:
            raise RuntimeError(f"exit {r.returncode}: {tail(logf, 3)}")
        out = []
        for row in rows:
            key = f"{self.uid}:{row['batch_size'] if row.get('batch_size') is not None else 'default'}"
            if self.mode.startswith("flag") and row["variant"].startswith("FlagReranker default"):
                key = f"{self.uid}:default"
            row["key"] = key
            out.append(row)
        return out


class ServerUnit(Unit):
    def __init__(self, uid, group, label, server_cmd, kind, target_fmt, server_env=None, unavailable=None,
                 ready_timeout=300, dtype="fp32", bf16=False, normalised=False):
        super().__init__(uid, group, {uid: label}, unavailable, dtype, bf16)
        self.server_cmd, self.kind, self.target_fmt = server_cmd, kind, target_fmt
        # Its answers carry normalised scores only (Cohere's shape): not compared with raw's.
        self.normalised = normalised
        self.server_env = server_env or {}
        self.ready_timeout = ready_timeout
        self.startup_s = None

    def run(self, rnd):
        port = free_port()
        slog = os.path.join(LOGS, f"{self.uid}.r{rnd}.server.log")
        dlog = os.path.join(LOGS, f"{self.uid}.r{rnd}.driver.log")
        cmd = [c.format(port=port) for c in self.server_cmd]
        envv = dict(os.environ, **self.server_env)
        t0 = time.time()
        with open(slog, "w") as sf:
            sf.write("$ " + " ".join(cmd) + "\n")
            sf.flush()
            server = subprocess.Popen(cmd, stdout=sf, stderr=subprocess.STDOUT, env=envv, start_new_session=True,
                                      cwd="/tmp")
        target = self.target_fmt.format(port=port)
        cpu0, t_drv = children_cpu_s(), time.time()
        slow = self.bf16 and not NATIVE_BF16
        n_req = SLOW_BF16_REQUESTS if slow else TIMED_REQUESTS
        warm = 2 if slow else CFG["clients"]
        dcmd = [P["BENCH_DRIVER_PY"], os.path.join(HERE, "load.py"), self.kind, target, "--workload",
                P["BENCH_WORKLOAD"], "--clients", str(CFG["clients"]), "--requests", str(n_req), "--warmup",
                str(warm), "--ready-timeout", str(self.ready_timeout), "--stubs-dir",
                os.path.join(P["BENCH_CACHE"], "stubs")]
        try:
            with open(dlog, "w") as df:
                driver = subprocess.Popen(dcmd, stdout=subprocess.PIPE, stderr=df, text=True)
                deadline = time.time() + CFG["unit_timeout"]
                while driver.poll() is None:
                    if server.poll() is not None:
                        driver.kill()
                        driver.wait()
                        raise RuntimeError(f"server exited with status {server.returncode}: {tail(slog)}")
                    if time.time() > deadline:
                        driver.kill()
                        driver.wait()
                        raise RuntimeError(f"timed out after {CFG['unit_timeout']:.0f}s (log {slog})")
                    time.sleep(0.2)
                stdout = driver.stdout.read()
            driver_cpu = children_cpu_s() - cpu0
            rows = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
            if driver.returncode != 0 or not rows:
                raise RuntimeError(
                    f"load driver failed (exit {driver.returncode}): {tail(dlog, 3)} | server: {tail(slog, 3)}"
                )
            row = rows[-1]
            if self.normalised:
                row.pop("scores0", None)
            if row["requests"] == 0:
                raise RuntimeError(f"every request failed: {row.get('first_error')}")
            row["key"] = self.uid
            row["wall_incl_startup_s"] = round(time.time() - t0, 1)
            # CPU the load driver itself used, as a share of the machine over the timed run (it runs
            # on the same cores as the server).
            row["driver_cpu_share"] = round(driver_cpu / (time.time() - t_drv) / (os.cpu_count() or 1), 3)
            return [row]
        finally:
            stop(server)


def children_cpu_s():
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stop(proc):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# --------------------------------------------------------------------------------------------------
# The contenders
# --------------------------------------------------------------------------------------------------


def build_units():
    mdl = P["BENCH_MODEL_DIR"]
    hf, ts = os.path.join(mdl, "hf"), os.path.join(mdl, "ts")
    units = []
    bin_ = P["BENCH_BIN"]
    rerankd_unavail = None if bin_ else f"no server binary: {P['BENCH_BIN_ERROR']}"

    def rerankd(uid, label, *flags, model=ts, bf16=False):
        cmd = [bin_ or "rerankd", "serve", "--model", model, "--addr", "127.0.0.1:{port}", "--drain-delay-secs", "0",
               "--grace-period-secs", "10", *flags]
        return ServerUnit(uid, "rerankd", label, cmd, "rerankd", "127.0.0.1:{port}", unavailable=rerankd_unavail,
                          server_env={"RUST_LOG": "info"}, dtype=None, bf16=bf16)

    units.append(rerankd("rerankd-default", "rerankd default (adaptive, --dtype auto)"))
    # The same server through its HTTP API's Cohere shape (POST /v1/rerank, aiohttp, keep-alive),
    # against rerankd-default's gRPC in the same run (the HTTP API's target: at least 0.95x).
    http_cmd = [bin_ or "rerankd", "serve", "--model", ts, "--addr", "127.0.0.1:0", "--http-addr",
                "127.0.0.1:{port}", "--drain-delay-secs", "0", "--grace-period-secs", "10"]
    units.append(ServerUnit("rerankd-http", "rerankd", "rerankd default, HTTP POST /v1/rerank (Cohere shape)",
                            http_cmd, "http", "http://127.0.0.1:{port}/v1/rerank", unavailable=rerankd_unavail,
                            server_env={"RUST_LOG": "info"}, dtype=None, normalised=True))
    units.append(OfflineUnit("raw", "raw", P["BENCH_PROJECT_PY"], "raw", ts, CFG["raw_sizes"],
                             {f"raw:{b}": f"raw TorchScript static {b}" for b in CFG["raw_sizes"]}))
    flag_unavail = None if P["BENCH_FLAG_PY"] else f"FlagEmbedding not installed: {P['BENCH_FLAG_ERROR']}"
    flag_sizes = [b for b in CFG["py_sizes"] if b != 128] + ["default"]
    flag_labels = {f"flag:{b}": f"FlagReranker compute_score batch {b}" for b in CFG["py_sizes"] if b != 128}
    flag_labels["flag:default"] = "FlagReranker compute_score default (batch 128)"
    units.append(OfflineUnit("flag", "flag", P["BENCH_FLAG_PY"], "flag", hf, flag_sizes, flag_labels, flag_unavail))
    # An extra line (one round): how a naive Python service would call it, one request at a time.
    flag_req = OfflineUnit("flag-req", "flag", P["BENCH_FLAG_PY"], "flag-per-request", hf, ["default"],
                           {"flag-req:default": "FlagReranker default, one call per request, sequential"}, flag_unavail)
    flag_req.one_round = True
    units.append(flag_req)
    units.append(OfflineUnit("st", "st", P["BENCH_PROJECT_PY"], "st", hf, CFG["py_sizes"],
                             {f"st:{b}": f"sentence-transformers CrossEncoder batch {b}" for b in CFG["py_sizes"]}))

    inf_unavail = None if P["BENCH_INFINITY_PY"] else f"infinity-emb not installed: {P['BENCH_INFINITY_ERROR']}"
    inf_env = {"DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HOME": os.path.join(P["BENCH_CACHE"], "hf-home"), "TOKENIZERS_PARALLELISM": "false"}

    def infinity(uid, label, model, *flags, unavailable=None, dtype="fp32"):
        exe = os.path.join(os.path.dirname(P["BENCH_INFINITY_PY"] or "/x/python"), "infinity_emb")
        # --no-model-warmup: Infinity's own start-up warm-up runs batches of 512-token inputs (about a
        # minute here); the load driver warms up every server the same way instead.
        # --no-vector-disk-cache: no result cache (the rounds repeat the same requests).
        cmd = [exe, "v2", "--model-id", model, "--served-model-name", "bench", "--host", "127.0.0.1",
               "--port", "{port}", "--device", "cpu", "--no-model-warmup", "--no-vector-disk-cache",
               "--log-level", "info", *flags]
        return ServerUnit(uid, "infinity", label, cmd, "http", "http://127.0.0.1:{port}/rerank", server_env=inf_env,
                          unavailable=unavailable or inf_unavail, dtype=dtype, bf16=dtype == "bf16")

    units.append(infinity("infinity-torch-fp32", "Infinity torch fp32", hf, "--engine", "torch", "--dtype", "float32"))
    onnx_unavail = None if P["BENCH_ONNX_DIR"] else f"no ONNX export: {P['BENCH_ONNX_ERROR']}"
    units.append(infinity("infinity-optimum", "Infinity optimum (ONNX Runtime) fp32", P["BENCH_ONNX_DIR"] or "-",
                          "--engine", "optimum", unavailable=onnx_unavail))
    units.append(infinity("infinity-torch-bf16", "Infinity torch --dtype bfloat16", hf, "--engine", "torch", "--dtype",
                          "bfloat16", dtype="bf16"))

    units.append(rerankd("rerankd-fp32", "rerankd --dtype fp32 (adaptive)", "--dtype", "fp32"))
    for b in CFG["static_sizes"]:
        label = f"rerankd static {b} (--max-batch-pairs {b} --min-padding-efficiency 0)"
        flags = ("--max-batch-pairs", str(b), "--min-padding-efficiency", "0")
        units.append(rerankd(f"rerankd-static-{b}", label, *flags))
    units.append(rerankd("rerankd-bf16", "rerankd --dtype bf16 (adaptive)", "--dtype", "bf16", bf16=True))
    # The server serves bf16 only if it ranks the model's golden groups as fp32 does; a random-weights
    # model's scores are so close together that bf16 may reorder them, and the server then serves
    # fp32 (the row above says which it served). The same weights from a folder without golden.json
    # skip that gate, to measure what bf16 itself costs or gains here.
    ungated = os.path.join(mdl, "ts-no-golden")
    if not os.path.isdir(ungated):
        os.makedirs(ungated + ".tmp", exist_ok=True)
        for f in ("model.pt", "tokenizer.json", "rerankd.json"):
            if not os.path.lexists(os.path.join(ungated + ".tmp", f)):
                os.symlink(os.path.join(ts, f), os.path.join(ungated + ".tmp", f))
        os.rename(ungated + ".tmp", ungated)
    units.append(rerankd("rerankd-bf16-ungated", "rerankd --dtype bf16, golden gate bypassed (no golden.json)",
                         "--dtype", "bf16", model=ungated, bf16=True))

    sel = []
    for u in units:
        if CFG["only"] and u.group not in CFG["only"] and u.uid not in CFG["only"]:
            continue
        if u.group in CFG["skip"] or u.uid in CFG["skip"]:
            continue
        sel.append(u)
    return sel


# --------------------------------------------------------------------------------------------------
# Fidelity: bf16 vs fp32 on real weights (minilm-pair), served by rerankd
# --------------------------------------------------------------------------------------------------


def spearman(a, b):
    # A constant list ranks as perfectly as its partner here (the fidelity table's convention).
    return rank_stats.spearman(a, b, degenerate=1.0)


def top_k(xs, k):
    return set(sorted(range(len(xs)), key=lambda i: (-xs[i], i))[:k])


def fidelity():
    if not P["BENCH_BIN"]:
        return {"error": f"no server binary: {P['BENCH_BIN_ERROR']}"}
    if not P["BENCH_FIDELITY_MODEL"]:
        return {"error": f"no minilm-pair model: {P['BENCH_FIDELITY_ERROR']}"}
    got = {}
    for dt in ["fp32", "bf16"]:
        port = free_port()
        slog = os.path.join(LOGS, f"fidelity-{dt}.server.log")
        scores = os.path.join(LOGS, f"fidelity-{dt}.scores.json")
        cmd = [P["BENCH_BIN"], "serve", "--model", P["BENCH_FIDELITY_MODEL"], "--addr", f"127.0.0.1:{port}",
               "--dtype", dt, "--drain-delay-secs", "0", "--grace-period-secs", "10"]
        with open(slog, "w") as sf:
            server = subprocess.Popen(cmd, stdout=sf, stderr=subprocess.STDOUT, start_new_session=True, cwd="/tmp")
        try:
            r = subprocess.run([P["BENCH_DRIVER_PY"], os.path.join(HERE, "load.py"), "rerankd", f"127.0.0.1:{port}",
                                "--workload", P["BENCH_WORKLOAD"], "--scores", scores, "--clients", "8",
                                "--ready-timeout", "300", "--stubs-dir", os.path.join(P["BENCH_CACHE"], "stubs")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=CFG["unit_timeout"])
            if r.returncode != 0:
                return {"error": f"{dt}: driver failed: {r.stderr.strip().splitlines()[-1:]} | server: {tail(slog, 3)}"}
            got[dt] = json.load(open(scores))
        except subprocess.TimeoutExpired:
            return {"error": f"{dt}: timed out"}
        finally:
            stop(server)
    a, b = got["fp32"]["scores"], got["bf16"]["scores"]
    sp = [spearman(x, y) for x, y in zip(a, b, strict=True)]
    k = 5
    ov = [len(top_k(x, k) & top_k(y, k)) / k for x, y in zip(a, b, strict=True)]
    diff = max(abs(p - q) for x, y in zip(a, b, strict=True) for p, q in zip(x, y, strict=True))
    fallback = [ln.strip()[:300] for ln in open(os.path.join(LOGS, "fidelity-bf16.server.log"), errors="replace")
                if "WARN" in ln and ("fp32" in ln or "bf16" in ln)]
    return {
        "model": got["fp32"]["model"],
        "served_dtype_fp32": got["fp32"]["dtype"],
        "served_dtype_bf16": got["bf16"]["dtype"],
        "groups": len(a),
        "pairs": sum(len(x) for x in a),
        "spearman_median": round(statistics.median(sp), 4),
        "spearman_min": round(min(sp), 4),
        "top5_overlap_mean": round(statistics.mean(ov), 4),
        "top5_overlap_min": round(min(ov), 4),
        "top1_same": sum(1 for x, y in zip(a, b, strict=True) if top_k(x, 1) == top_k(y, 1)),
        "max_abs_diff": round(diff, 5),
        "bf16_server_warnings": fallback[:3],
    }


# --------------------------------------------------------------------------------------------------
# Main: rounds, aggregation, the table
# --------------------------------------------------------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def main():
    t_start = time.time()
    units = build_units()
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpu": cpu_model(), "cores": os.cpu_count(), "avx512_bf16": has_flag("avx512_bf16"),
                 "amx_bf16": has_flag("amx_bf16"), "avx512f": has_flag("avx512f"), "avx2": has_flag("avx2")},
        "config": CFG,
        "workload": dict(WL["stats"], seed=WL["seed"]),
        "timed_per_round": TIMED_PAIRS_NOTE,
        "model": P["BENCH_MODEL_DIR"],
        "server_binary": P["BENCH_BIN"],
        "onnx_export": P["BENCH_ONNX_METHOD"],
        "loadavg_start": loadavg(),
    }
    results = {}   # key -> {"label", "unit", "runs": [...], "error"}
    for u in units:
        for key, label in u.label_of.items():
            results[key] = {"label": label, "unit": u.uid, "runs": [], "error": u.unavailable}
    log(f"{len(units)} contenders x {CFG['rounds']} rounds; {TIMED_PAIRS_NOTE} per server run; "
        f"{CFG['clients']} clients; load average {meta['loadavg_start']}")
    native_bf16 = NATIVE_BF16
    for rnd in range(CFG["rounds"]):
        for u in units:
            if u.unavailable:
                continue
            if rnd > 0 and (u.one_round or (u.bf16 and not native_bf16)):
                continue  # bf16 without native support is slow, extras are extras: one round
            if all(results[k]["error"] and not results[k]["runs"] for k in u.label_of) and rnd > 0:
                continue  # failed in round 1: do not retry
            wait_quiet()
            t0 = time.time()
            meter = ForeignMeter()
            try:
                rows = u.run(rnd)
                foreign = meter.fraction()
                for row in rows:
                    row["round"] = rnd + 1
                    row["loadavg_after"] = loadavg()
                    row["foreign_cpu"] = None if foreign is None else round(foreign, 3)
                    row.setdefault("dtype", (row.get("server") or {}).get("dtype") or u.dtype)
                    if row["key"] in results:
                        results[row["key"]]["runs"].append(row)
                    else:
                        results[row["key"]] = {"label": row.get("variant", row["key"]), "unit": u.uid,
                                               "runs": [row], "error": None}
                brief = ", ".join(f"{r['key'].split(':')[-1]}={r['pairs_per_s']}" for r in rows)
                log(f"round {rnd + 1} {u.uid}: {brief} pairs/s ({time.time() - t0:.0f}s; other processes "
                    f"used {foreign if foreign is not None else float('nan'):.0%} of the CPU meanwhile)")
            except RuntimeError as e:
                for k in u.label_of:
                    if not results[k]["runs"]:
                        results[k]["error"] = str(e)
                log(f"round {rnd + 1} {u.uid}: FAILED: {e}")
    fid = None
    if not CFG["only"] or "fidelity" in CFG["only"]:
        if "fidelity" not in CFG["skip"]:
            log("fidelity: minilm-pair fp32 vs bf16")
            fid = fidelity()
            log(f"fidelity: {fid}")
    meta["loadavg_end"] = loadavg()
    meta["total_s"] = round(time.time() - t_start, 1)
    report = aggregate(results, fid, meta)
    md = render(report)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"(written to {OUT}/results.json and {OUT}/results.md; logs in {LOGS})")


def cpu_model():
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def aggregate(results, fid, meta):
    rows = {}
    ref0 = None
    for key, r in results.items():
        if r["runs"] and key.startswith("raw:") and r["runs"][0].get("scores0"):
            ref0 = r["runs"][0]["scores0"]
            break
    for key, r in results.items():
        row = {"key": key, "label": r["label"], "unit": r["unit"], "error": None if r["runs"] else r["error"]}
        if r["runs"] and len(r["runs"]) < CFG["rounds"]:
            row["label"] += f" [{len(r['runs'])} round{'s' if len(r['runs']) > 1 else ''}]"
        if r["runs"]:
            best = max(r["runs"], key=lambda x: x["pairs_per_s"])
            row.update({
                "pairs_per_s": best["pairs_per_s"],
                "pairs_per_s_rounds": [x["pairs_per_s"] for x in r["runs"]],
                "pairs_per_s_median": round(statistics.median([x["pairs_per_s"] for x in r["runs"]]), 2),
                "foreign_cpu_rounds": [x.get("foreign_cpu") for x in r["runs"]],
                "foreign_cpu": best.get("foreign_cpu"),
                "latency_ms": best.get("latency_ms"),
                "errors": best.get("errors"),
                "first_error": best.get("first_error"),
                "server": best.get("server"),
                "padding_efficiency": (best.get("server") or {}).get(
                    "padding_efficiency", best.get("padding_efficiency")
                ),
                "dtype": best.get("dtype"),
                "driver_cpu_share": best.get("driver_cpu_share"),
            })
            s0 = next((x.get("scores0") for x in r["runs"] if x.get("scores0")), None)
            if s0 is not None and ref0 is not None and len(s0) == len(ref0):
                row["max_abs_diff_vs_raw"] = max(abs(a - b) for a, b in zip(s0, ref0, strict=True))
        rows[key] = row

    def pps(key):
        r = rows.get(key)
        return r.get("pairs_per_s") if r else None

    def best_of(prefix):
        cands = [r for k, r in rows.items() if k.startswith(prefix) and r.get("pairs_per_s")]
        return max(cands, key=lambda r: r["pairs_per_s"]) if cands else None

    ratios = []

    def ratio(name, num_row, den_row, target, higher_better=True, note=""):
        if num_row and den_row and num_row.get("pairs_per_s") and den_row.get("pairs_per_s"):
            v = num_row["pairs_per_s"] / den_row["pairs_per_s"]
            ratios.append({"name": name, "value": round(v, 3), "target": target,
                           "met": v >= target if higher_better else v <= target,
                           "numerator": f"{num_row['label']} {num_row['pairs_per_s']}",
                           "denominator": f"{den_row['label']} {den_row['pairs_per_s']}", "note": note})
        else:
            miss = [r for r in (num_row, den_row) if not (r and r.get("pairs_per_s"))]
            why = "; ".join(f"{r['label']}: {r['error']}" if r else "contender not run" for r in miss)
            ratios.append({"name": name, "value": None, "target": target, "met": None, "note": f"n/a ({why})"})

    default = rows.get("rerankd-default")
    raw_best = best_of("raw:")
    py_default = rows.get("flag:default") if pps("flag:default") else rows.get("st:32")
    py_note = "Python default = FlagReranker default" if pps("flag:default") else \
        "Python default = CrossEncoder batch 32 (FlagEmbedding did not run)"
    inf_best = best_of("infinity-")
    static_best = best_of("rerankd-static-")
    ratio("rerankd default / raw best static", default, raw_best, 0.95,
          note=f"raw best = {raw_best['label'] if raw_best else '-'}")
    ratio("rerankd default / Python default", default, py_default, 2.5, note=py_note)
    ratio("rerankd default / Infinity fastest", default, inf_best, 1.3,
          note=f"Infinity fastest = {inf_best['label'] if inf_best else '-'}")
    ratio("rerankd HTTP /v1/rerank / rerankd gRPC Rerank", rows.get("rerankd-http"), default, 0.95,
          note="the same server and workload, HTTP/1.1 keep-alive against gRPC")
    ratio("rerankd adaptive / best rerankd static", default, static_best, 0.9,
          note=f"best static = {static_best['label'] if static_best else '-'}")
    pe = (default or {}).get("padding_efficiency")
    ratios.append({"name": "rerankd default padding efficiency (real / computed tokens)", "value": pe,
                   "target": 0.9, "met": (pe >= 0.9) if pe is not None else None,
                   "note": "from Stats over the timed run"})
    if default and default.get("latency_ms") and inf_best and inf_best.get("latency_ms"):
        a, b = default["latency_ms"]["p99"], inf_best["latency_ms"]["p99"]
        ratios.append({"name": "p99 latency rerankd default / Infinity fastest", "value": round(a / b, 3),
                       "target": 1.0, "met": a <= b, "higher_better": False,
                       "note": f"{a} ms vs {b} ms ({inf_best['label']}); lower is better"})
    else:
        ratios.append({"name": "p99 latency rerankd default / Infinity fastest", "value": None, "target": 1.0,
                       "met": None, "note": "n/a"})
    return {"meta": meta, "rows": list(rows.values()), "ratios": ratios, "fidelity": fid}


def fmt(v, nd=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def render(rep):
    m = rep["meta"]
    h = m["host"]
    L = []
    L.append(f"# rerankd comparison — {m['date']}")
    L.append("")
    L.append(f"Host: {h['cpu']}, {h['cores']} cores, avx512_bf16={h['avx512_bf16']} amx_bf16={h['amx_bf16']} "
             f"avx512f={h['avx512f']} avx2={h['avx2']}; "
             f"load average at start {m['loadavg_start']}, end {m['loadavg_end']}.")
    w = m["workload"]
    L.append(f"Model: ms-marco-MiniLM-L-6 shape (BERT 6 layers, hidden 384), random weights seed 0, "
             f"all-MiniLM tokenizer; {m['model']}.")
    L.append(f"Workload (seed {w['seed']}): {w['pairs']} pairs in {w['requests']} requests of 16–32 documents; "
             f"tokens/pair mean {w['tokens_mean']}, p50 {w['tokens_p50']}, p90 {w['tokens_p90']}, "
             f"max {w['tokens_max']}; "
             f"per-request padding efficiency if each request were one batch: {w['request_padding_efficiency']}.")
    c = m["config"]
    L.append(f"Each contender: {c['rounds']} rounds, interleaved (A B C … A B C …); servers: {m['timed_per_round']} "
             f"per round with {c['clients']} concurrent closed-loop clients after {c['clients']} warm-up requests; "
             f"offline: one pass over all pairs per batch size per round. **pairs/s = best round**; all rounds "
             f"listed; p50/p99 per request from the best round. Threads: {c['threads']}. Total time {m['total_s']} s.")
    if not (h["avx512_bf16"] or h["amx_bf16"]):
        L.append(f"This CPU has no native bf16 (avx512_bf16/AMX): `--dtype auto` serves fp32, and the bf16 variants "
                 f"(emulated, slow) run one round of {SLOW_BF16_REQUESTS} requests (the workload's first "
                 f"{CFG['bf16_passes']:g}) after 2 warm-up requests.")
    L.append("padding eff. = real ÷ computed tokens (rerankd: its Stats over the timed run; raw: of the static "
             "batches). dtype run = the precision actually used (rerankd: as its ModelInfo reports). max Δscore vs "
             "raw = largest |raw score − raw TorchScript's| over the first request's documents: every contender "
             "must run the same model (fp32 ≈ 1e-6). Before each contender the run waits (up to "
             "RERANKD_BENCH_QUIET_WAIT s) for other processes to use < 15% of the CPU; rows measured while they "
             "used ≥ 5% say so.")
    L.append("")
    L.append("| contender | pairs/s (best) | rounds | p50 ms | p99 ms | padding eff. | dtype run | max Δscore vs raw "
             "| note |")
    L.append("|---|---:|---|---:|---:|---:|---|---:|---|")
    for r in rep["rows"]:
        if r.get("pairs_per_s") is None:
            L.append(f"| {r['label']} | — | — | — | — | — | — | — | NOT RUN: {r['error']} |")
            continue
        lat = r.get("latency_ms") or {}
        srv = r.get("server") or {}
        note = []
        if srv.get("pairs_per_batch"):
            note.append(
                f"{srv['batches']} batches, {srv['pairs_per_batch']} pairs/batch, util {srv.get('utilisation')}"
            )
        if r.get("driver_cpu_share") is not None:
            note.append(f"driver CPU {r['driver_cpu_share']:.0%}")
        if r.get("errors"):
            note.append(f"{r['errors']} errors: {r.get('first_error')}")
        fc = [x for x in (r.get("foreign_cpu_rounds") or []) if x is not None]
        if fc and max(fc) >= 0.05:
            note.append("other processes used " + " / ".join(f"{x:.0%}" for x in r["foreign_cpu_rounds"])
                        + " of the CPU")
        d = r.get("max_abs_diff_vs_raw")
        L.append(f"| {r['label']} | {fmt(r['pairs_per_s'])} | {' / '.join(fmt(x) for x in r['pairs_per_s_rounds'])} | "
                 f"{fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} | {fmt(r.get('padding_efficiency'), 3)} | "
                 f"{r.get('dtype') or ''} | {'—' if d is None else f'{d:.1e}'} | {'; '.join(note)} |")
    L.append("")
    L.append("| ratio | value | target | met? | note |")
    L.append("|---|---:|---:|---|---|")
    for q in rep["ratios"]:
        met = "—" if q["met"] is None else ("MET" if q["met"] else "MISSED")
        tgt = f"≤ {q['target']}" if q.get("higher_better") is False else f"≥ {q['target']}"
        num = f" ({q['numerator']} / {q['denominator']})" if q.get("numerator") else ""
        L.append(f"| {q['name']} | {fmt(q['value'], 3)} | {tgt} | {met} | {q['note']}{num} |")
    f = rep.get("fidelity")
    L.append("")
    if f is None:
        L.append("Fidelity: not run.")
    elif f.get("error"):
        L.append(f"Fidelity bf16 vs fp32: NOT RUN: {f['error']}")
    else:
        L.append(f"Fidelity bf16 vs fp32 on real weights ({f['model']}, served dtypes {f['served_dtype_fp32']} / "
                 f"{f['served_dtype_bf16']}; {f['groups']} query groups, {f['pairs']} pairs, raw scores):")
        L.append("")
        L.append("| Spearman median | Spearman min | top-5 overlap mean | top-5 overlap min | same top-1 "
                 "| max abs diff |")
        L.append("|---:|---:|---:|---:|---:|---:|")
        L.append(f"| {f['spearman_median']} | {f['spearman_min']} | {f['top5_overlap_mean']} | "
                 f"{f['top5_overlap_min']} | {f['top1_same']}/{f['groups']} | {f['max_abs_diff']} |")
        if f["served_dtype_bf16"] != "bf16":
            L.append("")
            L.append(f"Note: the server asked for bf16 served {f['served_dtype_bf16']} (its start-up faithfulness "
                     f"check fell back): {f['bf16_server_warnings']}")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
