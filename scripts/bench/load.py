#!/usr/bin/env python3
"""The comparison's one load driver: N concurrent clients in a closed loop (each sends its next
request as soon as its previous one is answered), all drawing from the same fixed list of requests
(the workload file's `requests`, in order, wrapping around), until a fixed number of requests has
been answered. Prints one JSON object on stdout:

  {"target", "requests", "pairs", "errors", "wall_s", "pairs_per_s", "requests_per_s",
   "latency_ms": {"p50", "p90", "p99", "max", "mean"}, "first_error", "server": {...}}

Targets:
  rerankd ADDR      rerank.v1.Reranker/Rerank over gRPC (grpcio's asyncio API; stubs generated from
                    proto/rerank/v1/rerank.proto by grpcio-tools into --stubs-dir). Also reads
                    ModelInfo (the precision actually served) and Stats before and after the timed
                    run: the run's own padding efficiency (real / padded tokens), batches, mean pairs
                    per batch and model utilisation (busy time / wall time).
  http URL          POST URL {"model": --model, "query", "documents", "return_documents": false}
                    with aiohttp (Infinity's /rerank and compatible servers); one keep-alive
                    connection per client.

Warm-up: --warmup requests (default: one per client) are sent first and not timed.
After the timed run, the first request is sent once more with raw scores ("raw_scores": true) and
its scores, in document order, are reported as "scores0" (the comparison checks that every
contender runs the same model).

--scores FILE: sends each of the workload's fidelity groups once (raw scores; --clients at a time)
and writes {"scores": [[score per document in input order], ...], "dtype", "model"} instead of timing.

Run with the bench driver venv (scripts/bench/setup-venvs.sh driver).
"""
import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(ROOT, "proto")
PROTO = "rerank/v1/rerank.proto"


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def load_stubs(stubs_root):
    """Generates rerank_pb2 / rerank_pb2_grpc from the proto (cached by the proto's hash); imports them."""
    with open(os.path.join(PROTO_DIR, PROTO), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = os.path.join(stubs_root, f"stubs-{digest}")
    marker = os.path.join(out, ".complete")
    if not os.path.exists(marker):
        tmp = f"{out}.tmp-{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}",
               f"--grpc_python_out={tmp}", PROTO]
        subprocess.run(cmd, check=True)
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, out)
        except OSError:  # another driver got there first
            subprocess.run(["rm", "-rf", tmp], check=False)
    sys.path.insert(0, out)
    from rerank.v1 import rerank_pb2, rerank_pb2_grpc  # noqa: E402

    return rerank_pb2, rerank_pb2_grpc


def summarize(target, latencies, pairs, errors, wall, first_error):
    lat = sorted(latencies)
    ms = lambda v: None if v is None else round(v * 1000.0, 1)  # noqa: E731
    return {
        "target": target,
        "requests": len(latencies),
        "pairs": pairs,
        "errors": errors,
        "first_error": first_error,
        "wall_s": round(wall, 3),
        "pairs_per_s": round(pairs / wall, 2) if wall > 0 else None,
        "requests_per_s": round(len(latencies) / wall, 3) if wall > 0 else None,
        "latency_ms": {
            "p50": ms(percentile(lat, 0.50)),
            "p90": ms(percentile(lat, 0.90)),
            "p99": ms(percentile(lat, 0.99)),
            "max": ms(lat[-1] if lat else None),
            "mean": ms(sum(lat) / len(lat) if lat else None),
        },
    }


async def closed_loop(call, requests, clients, total, warmup, after_warmup=None):
    """Runs `warmup` untimed then `total` timed requests from `clients` concurrent loops; awaits
    `after_warmup()` in between (rerankd: the Stats snapshot)."""
    state = {"next": 0}
    lat, errors, pairs = [], [0], [0]
    first_error = [None]

    async def worker(limit, record):
        while True:
            i = state["next"]
            if i >= limit:
                return
            state["next"] = i + 1
            req = requests[i % len(requests)]
            t0 = time.perf_counter()
            try:
                await call(req)
            except Exception as e:  # noqa: BLE001
                if record:
                    errors[0] += 1
                    if first_error[0] is None:
                        first_error[0] = f"{type(e).__name__}: {e}"[:500]
                continue
            if record:
                lat.append(time.perf_counter() - t0)
                pairs[0] += len(req["documents"])

    if warmup:
        state["next"] = 0
        await asyncio.gather(*(worker(warmup, False) for _ in range(min(clients, warmup))))
    if after_warmup is not None:
        await after_warmup()
    state["next"] = 0
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(total, True) for _ in range(clients)))
    wall = time.perf_counter() - t0
    return lat, pairs[0], errors[0], wall, first_error[0]


def stats_snapshot(resp):
    tot = {"batches": 0, "pairs": 0, "real_tokens": 0, "padded_tokens": 0, "busy_micros": 0}
    for d in resp.devices:
        for k in tot:
            tot[k] += getattr(d, k)
    return tot


async def run_rerankd(args, requests):
    import grpc

    pb2, pb2_grpc = load_stubs(args.stubs_dir)
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    channels = [grpc.aio.insecure_channel(args.target, options=opts + [("grpc.channel_id", i)])
                for i in range(max(1, args.channels))]
    stubs = [pb2_grpc.RerankerStub(c) for c in channels]
    # Wait until the model is loaded (the port is bound before that; calls get UNAVAILABLE).
    deadline = time.time() + args.ready_timeout
    info = None
    while True:
        try:
            info = await stubs[0].ModelInfo(pb2.ModelInfoRequest(), timeout=5)
            await stubs[0].Rerank(pb2.RerankRequest(query="warm up", documents=["ready?"]), timeout=30)
            break
        except grpc.aio.AioRpcError as e:
            if time.time() > deadline:
                why = f"rerankd at {args.target} not ready after {args.ready_timeout}s: {e.code()}"
                raise SystemExit(why) from None
            await asyncio.sleep(0.5)

    if args.scores:
        groups = json.load(open(args.workload))["fidelity_groups"]
        sem = asyncio.Semaphore(max(1, args.clients))

        async def score(g):
            async with sem:
                r = await stubs[0].Rerank(pb2.RerankRequest(query=g["query"], documents=g["documents"],
                                                            raw_scores=True), timeout=args.timeout)
            s = [0.0] * len(g["documents"])
            for res in r.results:
                s[res.index] = res.score
            return s

        out = await asyncio.gather(*(score(g) for g in groups))
        json.dump({"scores": out, "dtype": info.dtype, "model": info.name}, open(args.scores, "w"))
        print(json.dumps({"target": "rerankd", "groups": len(out), "dtype": info.dtype}))
        for c in channels:
            await c.close()
        return

    counter = {"n": 0}

    async def call(req):
        counter["n"] += 1
        stub = stubs[counter["n"] % len(stubs)]
        await stub.Rerank(pb2.RerankRequest(query=req["query"], documents=req["documents"]), timeout=args.timeout)

    snap = {}

    async def take_before():
        snap["before"] = stats_snapshot(await stubs[0].Stats(pb2.StatsRequest(), timeout=10))

    lat, pairs, errors, wall, first_error = await closed_loop(call, requests, args.clients, args.requests,
                                                              args.warmup, take_before)
    before = snap["before"]
    after = stats_snapshot(await stubs[0].Stats(pb2.StatsRequest(), timeout=10))
    res = summarize("rerankd", lat, pairs, errors, wall, first_error)
    r0 = requests[0]
    resp = await stubs[0].Rerank(pb2.RerankRequest(query=r0["query"], documents=r0["documents"], raw_scores=True),
                                 timeout=args.timeout)
    scores0 = [0.0] * len(r0["documents"])
    for x in resp.results:
        scores0[x.index] = x.score
    res["scores0"] = scores0
    d = {k: after[k] - before[k] for k in after}
    res["server"] = {
        "model": info.name,
        "dtype": info.dtype,
        "device": info.device,
        "batches": d["batches"],
        "pairs_per_batch": round(d["pairs"] / d["batches"], 2) if d["batches"] else None,
        "padding_efficiency": round(d["real_tokens"] / d["padded_tokens"], 4) if d["padded_tokens"] else None,
        "real_tokens": d["real_tokens"],
        "padded_tokens": d["padded_tokens"],
        "utilisation": round(d["busy_micros"] / 1e6 / wall, 3) if wall > 0 else None,
        "note": "Stats deltas over the timed run",
    }
    print(json.dumps(res))
    for c in channels:
        await c.close()


async def run_http(args, requests):
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=args.timeout)
    conn = aiohttp.TCPConnector(limit=args.clients + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
        # Wait until the server answers a rerank.
        deadline = time.time() + args.ready_timeout
        last = None
        while True:
            try:
                async with session.post(args.target, json={"model": args.model, "query": "warm up",
                                                           "documents": ["ready?"]}) as r:
                    if r.status == 200:
                        await r.read()
                        break
                    last = f"HTTP {r.status}: {(await r.text())[:300]}"
            except Exception as e:  # noqa: BLE001
                last = f"{type(e).__name__}: {e}"
            if time.time() > deadline:
                raise SystemExit(f"{args.target} not ready after {args.ready_timeout}s: {last}")
            await asyncio.sleep(0.5)

        async def call(req):
            body = {"model": args.model, "query": req["query"], "documents": req["documents"],
                    "return_documents": False}
            async with session.post(args.target, json=body) as r:
                data = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {data[:300]!r}")
                js = json.loads(data)
                n = len(js.get("results", js.get("data", [])))
                if n != len(req["documents"]):
                    raise RuntimeError(f"{n} results for {len(req['documents'])} documents")

        lat, pairs, errors, wall, first_error = await closed_loop(call, requests, args.clients, args.requests,
                                                                  args.warmup)
        res = summarize("http", lat, pairs, errors, wall, first_error)
        r0 = requests[0]
        try:
            async with session.post(args.target, json={"model": args.model, "query": r0["query"],
                                                       "documents": r0["documents"], "raw_scores": True}) as r:
                js = json.loads(await r.read())
            scores0 = [0.0] * len(r0["documents"])
            for x in js["results"]:
                scores0[x["index"]] = x.get("relevance_score", x.get("score"))
            res["scores0"] = scores0
        except Exception as e:  # noqa: BLE001
            res["scores0_error"] = f"{type(e).__name__}: {e}"[:300]
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["rerankd", "http"])
    ap.add_argument("target", help="rerankd: HOST:PORT; http: the rerank URL")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, help="timed requests (default: the workload's request count)")
    ap.add_argument("--warmup", type=int, help="untimed requests first (default: --clients)")
    ap.add_argument("--channels", type=int, default=1,
                    help="rerankd: gRPC channels (connections) shared by the clients")
    ap.add_argument("--model", default="bench", help="http: the model field")
    ap.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--stubs-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "rerankd-bench-stubs"))
    ap.add_argument("--scores", help="rerankd: write raw scores of the fidelity groups here instead of timing")
    args = ap.parse_args()
    wl = json.load(open(args.workload))
    requests = wl["requests"]
    if args.requests is None:
        args.requests = len(requests)
    if args.warmup is None:
        args.warmup = args.clients
    runner = run_rerankd if args.kind == "rerankd" else run_http
    asyncio.run(runner(args, requests))


if __name__ == "__main__":
    main()
