#!/usr/bin/env python3
"""The deployment files' cross-checks: what no single file's validator can see.

    deploy_cross_checks.py ROOT COMPOSE_DEFAULT.json COMPOSE_GPU.json ENVOY_VERSION

The ports (50051 gRPC, 8080 the HTTP API in the image and pods, 9400 metrics, 8080 Envoy on the
compose host, 9901 Envoy admin) and the health service name agree
across the Dockerfile, docker-compose.yml, Envoy, Prometheus and Kubernetes; Envoy's upstreams are
exactly the compose replicas; GPU replicas reserve an NVIDIA GPU and serve on CUDA; probes;
stop_grace_period and terminationGracePeriodSeconds cover preStop + drain delay + grace period; the
compose files are `docker compose config --format json` output (default and gpu profiles), and
ENVOY_VERSION is the validated Envoy's version, which the compose image must match.
Prints every problem as "- what" and exits 1, or prints "all consistent".

Run by scripts/ci/check-deploy.sh with the deploy tools' python (pyyaml). Owns: the rules that tie the
files together. Must never: run a validator, or write a file.
"""
import json
import os
import re
import sys

import yaml

root, default_json, gpu_json, envoy_version = sys.argv[1:5]
GRPC_PORT, METRICS_PORT, ENVOY_PORT, ENVOY_ADMIN_PORT = 50051, 9400, 8080, 9901
HTTP_PORT = 8080
HEALTH_SERVICE = "rerank.v1.Reranker"
CPU_REPLICAS = {"rerankd-1", "rerankd-2"}
GPU_REPLICAS = {"rerankd-gpu-1", "rerankd-gpu-2"}
problems = []


def check(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def port_of(addr):
    m = re.fullmatch(r".*:(\d+)", str(addr or ""))
    return int(m.group(1)) if m else None


def seconds(v):
    """compose durations ('45s', '1m30s') or numbers -> seconds."""
    if isinstance(v, (int, float)):
        return float(v) if v < 10**6 else v / 1e9  # compose JSON: nanoseconds
    total, s = 0.0, str(v)
    for num, unit in re.findall(r"([\d.]+)(h|ms|m|s|us|ns)", s):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


def load(path):
    with open(os.path.join(root, path)) as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------- Dockerfile
def dockerfile_instructions(text):
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        lines.append(cur)
        cur = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


with open(os.path.join(root, "Dockerfile")) as f:
    instrs = dockerfile_instructions(f.read())
stages, args = [], {}
for word, rest in instrs:
    if word == "ARG" and not stages:
        k, _, v = rest.partition("=")
        args[k] = v
    if word == "FROM":
        stages.append({"from": rest, "instrs": []})
    elif stages:
        stages[-1]["instrs"].append((word, rest))
check(len(stages) >= 2, "Dockerfile: not multi-stage")
builder = next((s for s in stages if re.search(r"\bAS\s+builder\b", s["from"], re.I)), None)
if check(builder is not None, "Dockerfile: no stage named builder"):
    src = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), builder["from"])
    check(src.startswith("rust:"), f"Dockerfile: builder is not an official rust image: {src}")
    rust = re.match(r"rust:(\d+)\.(\d+)", src)
    if check(rust, f"Dockerfile: builder image without a Rust version: {src}"):
        try:
            cargo = open(os.path.join(root, "Cargo.toml")).read()
            need = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)', cargo)
            if need:
                check((int(rust[1]), int(rust[2])) >= (int(need[1]), int(need[2])),
                      f"Dockerfile: Rust {rust[1]}.{rust[2]} < Cargo.toml rust-version")
        except FileNotFoundError:
            pass
    runs = " ".join(r for w, r in builder["instrs"] if w == "RUN")
    for needle in ("scripts/setup-venv.sh", "scripts/setup-models.sh", "cargo build --release", "--bin rerankd"):
        check(needle in runs, f"Dockerfile: builder does not run {needle!r}")
final = stages[-1] if stages else {"from": "", "instrs": []}
check(not final["from"].startswith("rust"), "Dockerfile: the runtime stage is the Rust image")
env = {}
for w, r in final["instrs"]:
    if w == "ENV":
        for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', r):
            env[k] = v.strip('"')
exposed = {int(p.split("/")[0]) for w, r in final["instrs"] if w == "EXPOSE" for p in r.split()}
check({GRPC_PORT, HTTP_PORT, METRICS_PORT} <= exposed,
      f"Dockerfile: EXPOSE {sorted(exposed)} lacks {GRPC_PORT}, {HTTP_PORT} or {METRICS_PORT}")
check(port_of(env.get("RERANKD_HTTP_ADDR")) == HTTP_PORT,
      f"Dockerfile: RERANKD_HTTP_ADDR={env.get('RERANKD_HTTP_ADDR')} is not port {HTTP_PORT}")
check(port_of(env.get("RERANKD_ADDR")) == GRPC_PORT,
      f"Dockerfile: RERANKD_ADDR={env.get('RERANKD_ADDR')} is not port {GRPC_PORT}")
check(port_of(env.get("RERANKD_METRICS_ADDR")) == METRICS_PORT,
      f"Dockerfile: RERANKD_METRICS_ADDR={env.get('RERANKD_METRICS_ADDR')} is not port {METRICS_PORT}")
check(env.get("RERANKD_MODEL"), "Dockerfile: no default RERANKD_MODEL")
users = [r for w, r in final["instrs"] if w == "USER"]
check(users and users[-1].split(":")[0] not in ("root", "0"),
      f"Dockerfile: runtime user is {users[-1] if users else 'root (no USER)'}")
entry = [r for w, r in final["instrs"] if w == "ENTRYPOINT"]
try:
    entry_argv = json.loads(entry[-1]) if entry else []
except ValueError:
    entry_argv = []
check(len(entry_argv) >= 2 and entry_argv[0].endswith("rerankd") and entry_argv[1] == "serve",
      f"Dockerfile: ENTRYPOINT {entry[-1] if entry else None} is not [.../rerankd, serve] (exec form)")
IMAGE_GRACE = float(env.get("RERANKD_GRACE_PERIOD_SECS", 30))
IMAGE_DRAIN = float(env.get("RERANKD_DRAIN_DELAY_SECS", 5))
IMAGE_MODEL = env.get("RERANKD_MODEL")
try:
    ignore = open(os.path.join(root, ".dockerignore")).read().split()
    check(any(i.strip("/").endswith("target") for i in ignore), ".dockerignore: target/ not excluded")
    check(".git" in ignore, ".dockerignore: .git not excluded")
except FileNotFoundError:
    problems.append(".dockerignore missing")

# ---------------------------------------------------------------- compose
def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        problems.append(f"compose: no `config` output ({os.path.basename(path)}): see the compose stage")
        return {}


cdef, cgpu = load_json(default_json), load_json(gpu_json)
svc_def, svc_gpu = cdef.get("services", {}), cgpu.get("services", {})
check(CPU_REPLICAS <= set(svc_def), f"compose: default profile lacks {sorted(CPU_REPLICAS - set(svc_def))}")
check(not (GPU_REPLICAS & set(svc_def)), "compose: GPU replicas run without --profile gpu")
check(GPU_REPLICAS <= set(svc_gpu), f"compose: --profile gpu lacks {sorted(GPU_REPLICAS - set(svc_gpu))}")
for name in ("envoy", "prometheus"):
    check(name in svc_def, f"compose: no {name} service")
replica_names = sorted(n for n in svc_gpu if n in CPU_REPLICAS | GPU_REPLICAS)
for name in replica_names:
    s = svc_gpu[name]
    e = s.get("environment") or {}
    dockerfile = os.path.basename(s.get("build", {}).get("dockerfile", "Dockerfile"))
    check(s.get("build", {}).get("context") and dockerfile == "Dockerfile",
          f"compose: {name} is not built from the Dockerfile")
    addr = e.get("RERANKD_ADDR", env.get("RERANKD_ADDR"))
    maddr = e.get("RERANKD_METRICS_ADDR", env.get("RERANKD_METRICS_ADDR"))
    check(port_of(addr) == GRPC_PORT, f"compose: {name} RERANKD_ADDR={addr} is not port {GRPC_PORT}")
    check(port_of(maddr) == METRICS_PORT, f"compose: {name} RERANKD_METRICS_ADDR={maddr} is not port {METRICS_PORT}")
    grace = float(e.get("RERANKD_GRACE_PERIOD_SECS", IMAGE_GRACE))
    drain = float(e.get("RERANKD_DRAIN_DELAY_SECS", IMAGE_DRAIN))
    check(drain <= grace, f"compose: {name} drain delay {drain}s > grace period {grace}s")
    sgp = seconds(s.get("stop_grace_period", "10s"))
    check(sgp >= grace + 5,
          f"compose: {name} stop_grace_period {sgp:g}s is shorter than the grace period {grace:g}s + 5 s margin")
    cmd = s.get("command") or []
    cmd_s = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    devices_flag = re.search(r"--devices?[ =](\S+)", cmd_s)
    devices = devices_flag.group(1) if devices_flag else e.get("RERANKD_DEVICES", env.get("RERANKD_DEVICES", "cpu"))
    if name in GPU_REPLICAS:
        check("gpu" in (s.get("profiles") or []), f"compose: {name} is not in the gpu profile")
        check(devices.startswith("cuda"), f"compose: {name} serves on {devices}, not cuda:0")
        devs = (((s.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
        check(any(d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or []) for d in devs),
              f"compose: {name} reserves no NVIDIA GPU (driver nvidia, capabilities [gpu])")
    else:
        check(not s.get("profiles"), f"compose: CPU replica {name} is behind a profile")
        check(devices == "cpu", f"compose: CPU replica {name} serves on {devices}")

envoy_svc = svc_def.get("envoy", {})
m = re.fullmatch(r"envoyproxy/envoy:v?(\d+\.\d+)\.\d+.*", envoy_svc.get("image", ""))
check(m and envoy_version.startswith(m.group(1) + "."),
      f"compose: Envoy image {envoy_svc.get('image')} is not the validated Envoy {envoy_version} "
      "(keep ENVOY_VERSION in scripts/ci/install-tools.sh and the image in step)")
published = {int(p.get("target")) for p in envoy_svc.get("ports", []) if p.get("published")}
check({ENVOY_PORT, ENVOY_ADMIN_PORT} <= published,
      f"compose: Envoy publishes {sorted(published)}, not {ENVOY_PORT} and {ENVOY_ADMIN_PORT}")
mounts = {v.get("target"): v.get("source", "") for v in envoy_svc.get("volumes", [])}
envoy_cfg_target = next((t for t, src in mounts.items() if src.endswith("deploy/envoy/envoy.yaml")), None)
check(envoy_cfg_target, "compose: deploy/envoy/envoy.yaml is not mounted into envoy")
cmd = envoy_svc.get("command") or []
if envoy_cfg_target and cmd:
    check(envoy_cfg_target in cmd, f"compose: envoy's command does not load {envoy_cfg_target}")
prom_svc = svc_def.get("prometheus", {})
check(any(v.get("source", "").endswith("deploy/prometheus/prometheus.yml") for v in prom_svc.get("volumes", [])),
      "compose: deploy/prometheus/prometheus.yml is not mounted into prometheus")

# ---------------------------------------------------------------- Envoy
ev = load("deploy/envoy/envoy.yaml")
admin_port = (((ev.get("admin") or {}).get("address") or {}).get("socket_address") or {}).get("port_value")
check(admin_port == ENVOY_ADMIN_PORT, f"envoy: admin on {admin_port}, not {ENVOY_ADMIN_PORT}")
sr = ev.get("static_resources") or {}
clusters = {c["name"]: c for c in sr.get("clusters", [])}
routed = set()
listener_ports = []
for lst in sr.get("listeners", []):
    listener_ports.append(lst["address"]["socket_address"]["port_value"])
    for fc in lst.get("filter_chains", []):
        for flt in fc.get("filters", []):
            tc = flt.get("typed_config") or {}
            if "HttpConnectionManager" not in tc.get("@type", ""):
                continue
            if lst["address"]["socket_address"]["port_value"] == ENVOY_PORT:
                check(tc.get("codec_type") in ("HTTP2", "AUTO"),
                      f"envoy: listener {ENVOY_PORT} codec {tc.get('codec_type')} does not take h2c")
            for vh in (tc.get("route_config") or {}).get("virtual_hosts", []):
                for r in vh.get("routes", []):
                    c = (r.get("route") or {}).get("cluster")
                    if c:
                        routed.add(c)
check(ENVOY_PORT in listener_ports, f"envoy: no listener on {ENVOY_PORT} (listeners: {listener_ports})")
check(routed, "envoy: no route to a cluster")
upstream_hosts = set()
for cname in routed:
    c = clusters.get(cname)
    if not check(c, f"envoy: route to unknown cluster {cname}"):
        continue
    check(c.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN", f"envoy: cluster {cname} lb_policy {c.get('lb_policy')}")
    protocol_options = c.get("typed_extension_protocol_options") or {}
    po = protocol_options.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions") or {}
    check("http2_protocol_options" in (po.get("explicit_http_config") or {}),
          f"envoy: cluster {cname} does not speak HTTP/2 upstream")
    hcs = [h.get("grpc_health_check") for h in c.get("health_checks", []) if "grpc_health_check" in h]
    check(hcs, f"envoy: cluster {cname} has no gRPC health check")
    for hc in hcs:
        checked = (hc or {}).get("service_name")
        check(checked == HEALTH_SERVICE,
              f"envoy: cluster {cname} health-checks service {checked!r}, not {HEALTH_SERVICE!r}")
    for group in (c.get("load_assignment") or {}).get("endpoints", []):
        for ep in group.get("lb_endpoints", []):
            sa = ep["endpoint"]["address"]["socket_address"]
            upstream_hosts.add(sa["address"])
            check(sa.get("port_value") == GRPC_PORT,
                  f"envoy: upstream {sa['address']}:{sa.get('port_value')} is not port {GRPC_PORT}")
check(upstream_hosts == set(replica_names),
      f"envoy: upstream hosts {sorted(upstream_hosts)} != compose replicas {replica_names}")

# ---------------------------------------------------------------- Prometheus
pm = load("deploy/prometheus/prometheus.yml")
targets = {}  # metrics_path -> set of host:port
for job in pm.get("scrape_configs", []):
    path = job.get("metrics_path", "/metrics")
    t = targets.setdefault(path, set())
    for sc in job.get("static_configs", []):
        t.update(sc.get("targets", []))
    for dc in job.get("dns_sd_configs", []):
        t.update(f"{n}:{dc.get('port')}" for n in dc.get("names", []))
want = {f"{n}:{METRICS_PORT}" for n in replica_names}
scraped = targets.get("/metrics", set())
check(want <= scraped, f"prometheus: /metrics targets {sorted(scraped)} miss {sorted(want - scraped)}")
check(f"envoy:{ENVOY_ADMIN_PORT}" in targets.get("/stats/prometheus", set()),
      f"prometheus: Envoy's /stats/prometheus on envoy:{ENVOY_ADMIN_PORT} is not scraped")
for name in replica_names:
    e = svc_gpu[name].get("environment") or {}
    maddr = e.get("RERANKD_METRICS_ADDR", env.get("RERANKD_METRICS_ADDR"))
    check(f"{name}:{port_of(maddr)}" in targets.get("/metrics", set()),
          f"prometheus: scrapes {name} on {METRICS_PORT} but it serves metrics on {maddr}")

# ---------------------------------------------------------------- Kubernetes
docs = []
for fn in sorted(os.listdir(os.path.join(root, "deploy/k8s"))):
    if fn.endswith((".yaml", ".yml")):
        with open(os.path.join(root, "deploy/k8s", fn)) as f:
            docs += [(fn, d) for d in yaml.safe_load_all(f) if d]
for fn, d in docs:
    check(d.get("apiVersion") and d.get("kind") and (d.get("metadata") or {}).get("name"),
          f"k8s {fn}: apiVersion/kind/metadata.name missing")
deps = [d for _, d in docs if d.get("kind") == "Deployment"]
svcs = [d for _, d in docs if d.get("kind") == "Service"]
if check(len(deps) == 1, f"k8s: {len(deps)} Deployments, want 1"):
    dep = deps[0]
    spec = dep["spec"]
    check(spec.get("replicas") == 2, f"k8s: replicas {spec.get('replicas')}, want 2")
    tmpl = spec["template"]
    labels = tmpl["metadata"].get("labels") or {}
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    check(sel and sel.items() <= labels.items(), "k8s: Deployment selector does not match its pod labels")
    pod = tmpl["spec"]
    ctr = next((c for c in pod["containers"] if "rerankd" in c.get("name", "")), pod["containers"][0])
    ports = {p.get("name"): p["containerPort"] for p in ctr.get("ports", [])}
    check(ports.get("grpc") == GRPC_PORT, f"k8s: container port grpc = {ports.get('grpc')}, want {GRPC_PORT}")
    check(ports.get("metrics") == METRICS_PORT,
          f"k8s: container port metrics = {ports.get('metrics')}, want {METRICS_PORT}")
    check(ports.get("http") == HTTP_PORT, f"k8s: container port http = {ports.get('http')}, want {HTTP_PORT}")
    kenv = {e["name"]: e.get("value") for e in ctr.get("env", [])}
    check(port_of(kenv.get("RERANKD_ADDR", env.get("RERANKD_ADDR"))) == GRPC_PORT,
          "k8s: RERANKD_ADDR is not port 50051")
    check(port_of(kenv.get("RERANKD_METRICS_ADDR", env.get("RERANKD_METRICS_ADDR"))) == METRICS_PORT,
          "k8s: RERANKD_METRICS_ADDR is not port 9400")
    check(port_of(kenv.get("RERANKD_HTTP_ADDR", env.get("RERANKD_HTTP_ADDR"))) == HTTP_PORT,
          f"k8s: RERANKD_HTTP_ADDR is not port {HTTP_PORT}")
    model = kenv.get("RERANKD_MODEL")
    mounted = [m["mountPath"] for m in ctr.get("volumeMounts", [])]
    if model and IMAGE_MODEL and not any(model.startswith(mp.rstrip("/") + "/") for mp in mounted):
        check(model == IMAGE_MODEL,
              f"k8s: RERANKD_MODEL {model} is neither the image's model {IMAGE_MODEL} nor on a volume")

    def probe_port(p):
        return ports.get(p, p)

    rp = ctr.get("readinessProbe") or {}
    check((rp.get("grpc") or {}).get("port") == GRPC_PORT and (rp.get("grpc") or {}).get("service") == HEALTH_SERVICE,
          f"k8s: readinessProbe is not grpc {{port: {GRPC_PORT}, service: {HEALTH_SERVICE}}}: {rp}")
    lp = ctr.get("livenessProbe") or {}
    sp = ctr.get("startupProbe") or {}
    if "tcpSocket" in lp:
        check(probe_port(lp["tcpSocket"].get("port")) == GRPC_PORT,
              f"k8s: livenessProbe tcpSocket port {lp['tcpSocket'].get('port')}")
    elif "grpc" in lp:
        # gRPC liveness is NOT_SERVING during loading and draining: only with a startup probe.
        check(sp, "k8s: grpc livenessProbe without a startupProbe kills pods that are still loading")
    else:
        problems.append(f"k8s: livenessProbe is neither tcpSocket nor grpc: {lp}")
    pre = ((ctr.get("lifecycle") or {}).get("preStop")) or {}
    pre_s = 0.0
    if "sleep" in pre:
        pre_s = float(pre["sleep"].get("seconds", 0))
    elif "exec" in pre:
        cmd = pre["exec"].get("command", [])
        if len(cmd) >= 2 and cmd[0].endswith("sleep"):
            pre_s = float(cmd[-1])
    check(pre_s > 0, "k8s: no preStop sleep")
    kgrace = float(kenv.get("RERANKD_GRACE_PERIOD_SECS") or IMAGE_GRACE)
    kdrain = float(kenv.get("RERANKD_DRAIN_DELAY_SECS") or IMAGE_DRAIN)
    tgp = pod.get("terminationGracePeriodSeconds", 30)
    check(kdrain <= kgrace, f"k8s: drain delay {kdrain}s > grace period {kgrace}s")
    need = pre_s + kdrain + kgrace + 5
    check(tgp >= need,
          f"k8s: terminationGracePeriodSeconds {tgp} < preStop {pre_s:g} + drain {kdrain:g} + grace {kgrace:g} "
          f"+ 5 s margin = {need:g}")
    check("nvidia.com/gpu" in open(os.path.join(root, "deploy/k8s", next(fn for fn, d in docs if d is dep))).read(),
          "k8s: no (commented) nvidia.com/gpu limit")
    check((ctr.get("resources") or {}).get("requests"), "k8s: no resource requests")
    headless = [s for s in svcs if (s.get("spec") or {}).get("clusterIP") == "None"]
    normal = [s for s in svcs if (s.get("spec") or {}).get("clusterIP") != "None"]
    check(headless, "k8s: no headless Service (clusterIP: None)")
    check(normal, "k8s: no ClusterIP Service")
    for s in svcs:
        ss = s.get("spec") or {}
        n = s["metadata"]["name"]
        check(ss.get("selector") and ss["selector"].items() <= labels.items(),
              f"k8s: Service {n} selector does not match the pods")
        gp = [p for p in ss.get("ports", []) if probe_port(p.get("targetPort", p.get("port"))) == GRPC_PORT]
        check(gp, f"k8s: Service {n} does not reach the grpc port")
        for p in gp:
            check(p.get("name", "").startswith("grpc") or p.get("appProtocol") in ("grpc", "kubernetes.io/h2c"),
                  f"k8s: Service {n} port {p.get('port')} is not named grpc (meshes would treat it as TCP)")
    check(any(p.get("targetPort") == "http" and p.get("port") == HTTP_PORT
              for p in (normal[0].get("spec") or {}).get("ports", [])) if normal else True,
          f"k8s: the ClusterIP Service does not publish the HTTP API (port {HTTP_PORT}, targetPort http)")

if problems:
    print("\n".join("- " + p for p in problems))
    sys.exit(1)
print("all consistent")
