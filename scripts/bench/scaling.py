#!/usr/bin/env python3
"""Scaling sweep: how rerankd's throughput and p99 latency grow with concurrent
clients and with documents per request, measured with `rerankd bench`.

Starts one server (the binary and model given), runs `rerankd bench` once per
point, and writes to OUT: scaling.json (every point's summary), scaling.md
(two tables) and scaling.svg (pairs/s and p99 against each axis). Each point's
own bench JSON and SVG stay under OUT/points/. Standard library only.

Usage: scaling.py BIN MODEL_DIR OUT
       scaling.py --replot OUT      (redraws OUT/scaling.svg from OUT/scaling.json)
Environment: RERANKD_SCALING_CLIENTS (default 1,2,4,8,16,32,64,128,256),
RERANKD_SCALING_DOCUMENTS (default 10,100,1000,5000), RERANKD_SCALING_DURATION
(seconds per concurrency point, default 20), RERANKD_SCALING_LENGTHS
(default long-tail), RERANKD_SCALING_SEED (default 42).
"""
import json
import math
import os
import re
import subprocess
import sys
import time

if sys.argv[1] == "--replot":
    BIN, MODEL, OUT = None, None, sys.argv[2]
else:
    BIN, MODEL, OUT = sys.argv[1:4]
CLIENTS = [int(x) for x in os.environ.get("RERANKD_SCALING_CLIENTS", "1,2,4,8,16,32,64,128,256").split(",")]
DOCUMENTS = [int(x) for x in os.environ.get("RERANKD_SCALING_DOCUMENTS", "10,100,1000,5000").split(",")]
DURATION = float(os.environ.get("RERANKD_SCALING_DURATION", "20"))
LENGTHS = os.environ.get("RERANKD_SCALING_LENGTHS", "long-tail")
SEED = os.environ.get("RERANKD_SCALING_SEED", "42")
DOCS_PER_REQUEST_FOR_CLIENTS = 10
CLIENTS_FOR_DOCUMENTS = 1


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def start_server():
    """Starts the server on a free port; returns (process, address) once it is warm."""
    os.makedirs(OUT, exist_ok=True)
    logf = open(os.path.join(OUT, "server.log"), "w")
    env = dict(os.environ, RERANKD_LOG_FORMAT="json")
    max_docs = max(DOCUMENTS + [1000])
    proc = subprocess.Popen(
        [BIN, "serve", "--model", MODEL, "--addr", "127.0.0.1:0", "--http-addr", "off", "--max-documents", str(max_docs),
         "--max-queued-pairs", str(max(20000, 2 * max_docs, 2 * max(CLIENTS) * DOCS_PER_REQUEST_FOR_CLIENTS))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    addr = None
    for line in proc.stdout:
        logf.write(line)
        logf.flush()
        m = re.search(r'"addr":"([0-9.:]+)"', line)
        if m and addr is None and "listening" in line:
            addr = m.group(1)
        if "model loaded and warmed up" in line:
            break
    else:
        sys.exit(f"scaling: the server exited before it was warm (log {OUT}/server.log)")
    if addr is None:
        sys.exit(f"scaling: no listening address in the server's log ({OUT}/server.log)")

    # Keep draining the server's output so that it never blocks on a full pipe.
    import threading

    def drain():
        for line in proc.stdout:
            logf.write(line)
    threading.Thread(target=drain, daemon=True).start()
    return proc, addr


def bench(addr, name, clients, documents, extra):
    points = os.path.join(OUT, "points")
    os.makedirs(points, exist_ok=True)
    js, svg = os.path.join(points, f"{name}.json"), os.path.join(points, f"{name}.svg")
    cmd = [BIN, "bench", "--addr", f"http://{addr}", "--clients", str(clients), "--documents", str(documents),
           "--lengths", LENGTHS, "--seed", SEED, "--deadline", "3600", "--json", js, "--plot", svg,
           "--no-progress"] + extra
    t = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        log(f"{name}: bench failed (exit {r.returncode}): {r.stdout[-500:]}")
        return {"name": name, "clients": clients, "documents": documents, "error": r.stdout[-500:]}
    s = json.load(open(js))["summary"]
    lat = s.get("latency_ms") or {}
    row = {
        "name": name, "clients": clients, "documents": documents,
        "requests": s["requests"], "failed": s["failed"],
        "pairs_per_second": round(s["pairs_per_second"], 2),
        "requests_per_second": round(s["requests_per_second"], 3),
        "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
        "padding_efficiency": s.get("padding_efficiency"),
        "mean_pairs_per_batch": s.get("mean_pairs_per_batch"),
        "busy_share": s.get("busy_share"),
        "wall_s": round(time.time() - t, 1),
    }
    log(f"{name}: {row['pairs_per_second']} pairs/s, p99 {row['p99_ms']} ms, {row['requests']} requests "
        f"({row['failed']} failed), {row['mean_pairs_per_batch']} pairs/batch")
    return row


def requests_for(documents):
    """Enough requests for ~400 pairs, at least one."""
    return max(1, math.ceil(400 / documents))


def fmt(v, d=1):
    """A figure with d decimals, or a dash when it was not measured."""
    return "–" if v is None else f"{v:.{d}f}"


def table(rows, axis):
    head = (f"| {axis} | pairs/s | requests/s | p50 ms | p99 ms | requests (failed) | pairs/batch | padding eff. "
            "| busy |")
    out = [head, "|" + "---|" * 9]
    for r in rows:
        if r.get("error"):
            out.append(f"| {r[axis]} | failed: {r['error'][:80]} |||||||| ")
            continue
        out.append(f"| {r[axis]} | {fmt(r['pairs_per_second'])} | {fmt(r['requests_per_second'], 2)} | "
                   f"{fmt(r['p50_ms'], 0)} | {fmt(r['p99_ms'], 0)} | {r['requests']} ({r['failed']}) | "
                   f"{fmt(r['mean_pairs_per_batch'])} | {fmt(r['padding_efficiency'], 3)} | "
                   f"{fmt(r['busy_share'], 2)} |")
    return "\n".join(out)


def svg(by_clients, by_documents, title):
    """Two panels (clients, documents per request), each with pairs/s (left axis, solid) and p99
    latency (right axis, dashed), both against a log x axis."""
    W, H, PW, PH, M = 1130, 420, 380, 280, 80
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
             'font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">{title}</text>']

    def panel(x0, rows, axis, label):
        rows = [r for r in rows if not r.get("error") and r.get("p99_ms") is not None]
        y0 = 50
        parts.append(f'<rect x="{x0}" y="{y0}" width="{PW}" height="{PH}" fill="none" stroke="#444"/>')
        parts.append(f'<text x="{x0 + PW/2}" y="{y0 + PH + 40}" text-anchor="middle">{label} (log scale)</text>')
        if not rows:
            return
        xs = [r[axis] for r in rows]
        lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
        lx1 = lx1 if lx1 > lx0 else lx0 + 1

        def px(v):
            return x0 + (math.log10(v) - lx0) / (lx1 - lx0) * PW

        tmax = max(r["pairs_per_second"] for r in rows) * 1.15
        lmax = max(r["p99_ms"] for r in rows) / 1000 * 1.15

        def pt(v):
            return y0 + PH - v / tmax * PH

        def pl(v):
            return y0 + PH - v / lmax * PH

        for v in xs:
            parts.append(f'<text x="{px(v)}" y="{y0 + PH + 16}" text-anchor="middle">{v}</text>')
        for i in range(5):
            t, lat_s = tmax * i / 4, lmax * i / 4
            parts.append(f'<text x="{x0 - 6}" y="{pt(t) + 4}" text-anchor="end" fill="#1f5fa8">{t:.0f}</text>')
            parts.append(f'<text x="{x0 + PW + 6}" y="{pl(lat_s) + 4}" fill="#b5432a">{lat_s:.1f}</text>')
        parts.append(f'<text transform="translate({x0 - 45},{y0 + PH/2}) rotate(-90)" text-anchor="middle" '
                     'fill="#1f5fa8">pairs/s</text>')
        parts.append(f'<text transform="translate({x0 + PW + 48},{y0 + PH/2}) rotate(90)" text-anchor="middle" '
                     'fill="#b5432a">p99 latency (s)</text>')
        thr = " ".join(f"{px(r[axis]):.1f},{pt(r['pairs_per_second']):.1f}" for r in rows)
        lat = " ".join(f"{px(r[axis]):.1f},{pl(r['p99_ms'] / 1000):.1f}" for r in rows)
        parts.append(f'<polyline points="{thr}" fill="none" stroke="#1f5fa8" stroke-width="2"/>')
        parts.append(f'<polyline points="{lat}" fill="none" stroke="#b5432a" stroke-width="2" stroke-dasharray="6,4"/>')
        for r in rows:
            parts.append(f'<circle cx="{px(r[axis]):.1f}" cy="{pt(r["pairs_per_second"]):.1f}" r="3" fill="#1f5fa8"/>')
            parts.append(f'<circle cx="{px(r[axis]):.1f}" cy="{pl(r["p99_ms"] / 1000):.1f}" r="3" fill="#b5432a"/>')

    panel(M, by_clients, "clients", f"concurrent clients ({DOCS_PER_REQUEST_FOR_CLIENTS} documents per request)")
    panel(M + PW + 2 * M + 30, by_documents, "documents", f"documents per request ({CLIENTS_FOR_DOCUMENTS} client)")
    parts.append(f'<text x="{W/2}" y="{H - 8}" text-anchor="middle" fill="#555">'
                 'solid: throughput (pairs/s); dashed: p99 latency</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def replot():
    data = json.load(open(os.path.join(OUT, "scaling.json")))
    model, meta = data["meta"]["model"], data["meta"]
    title = (f"rerankd scaling: {model.get('name')} {model.get('dtype')} on {meta['cpus']} CPUs, "
             f"{meta['lengths']} documents")
    open(os.path.join(OUT, "scaling.svg"), "w").write(svg(data["by_clients"], data["by_documents"], title))


def main():
    proc, addr = start_server()
    log(f"server on {addr} ({MODEL})")
    try:
        by_clients = [bench(addr, f"clients-{c}", c, DOCS_PER_REQUEST_FOR_CLIENTS,
                            ["--duration", str(DURATION), "--warmup", "3"]) for c in CLIENTS]
        by_documents = [bench(addr, f"documents-{d}", CLIENTS_FOR_DOCUMENTS, d,
                              ["--requests", str(requests_for(d)), "--warmup", "2"]) for d in DOCUMENTS]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    model = json.load(open(os.path.join(OUT, "points", f"clients-{CLIENTS[0]}.json")))["model"]
    meta = {"model": model, "lengths": LENGTHS, "seed": SEED, "duration_s": DURATION, "cpus": os.cpu_count(),
            "load_average_end": os.getloadavg()}
    json.dump({"meta": meta, "by_clients": by_clients, "by_documents": by_documents},
              open(os.path.join(OUT, "scaling.json"), "w"), indent=1)
    md = (f"### Concurrency ({DOCS_PER_REQUEST_FOR_CLIENTS} {LENGTHS} documents per request, "
          f"{DURATION:.0f} s per point)\n\n"
          f"{table(by_clients, 'clients')}\n\n"
          f"### Documents per request ({CLIENTS_FOR_DOCUMENTS} client, about 400 pairs per point)\n\n"
          f"{table(by_documents, 'documents')}\n")
    open(os.path.join(OUT, "scaling.md"), "w").write(md)
    title = f"rerankd scaling: {model.get('name')} {model.get('dtype')} on {os.cpu_count()} CPUs, {LENGTHS} documents"
    open(os.path.join(OUT, "scaling.svg"), "w").write(svg(by_clients, by_documents, title))
    print(md)


if __name__ == "__main__":
    replot() if BIN is None else main()
