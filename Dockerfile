# syntax=docker/dockerfile:1.7
#
# rerankd: a multi-stage image that serves the default model (all-MiniLM-L6-v2
# in pair mode) on gRPC :50051, the HTTP API (Cohere, Jina, TEI shapes and the
# status page) on :8080 and Prometheus metrics on :9400.
#
#   docker build -t rerankd:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8080:8080 -p 9400:9400 rerankd:0.1.0
#   docker run --rm --gpus all -p 50051:50051 rerankd:0.1.0 --devices cuda:0
#   docker run --rm -v "$PWD/models/bge:/models/bge:ro" -e RERANKD_MODEL=/models/bge rerankd:0.1.0
#
# The builder runs the project's own scripts, exactly as on a developer's
# machine: scripts/setup-venv.sh (libtorch = PyPI's torch==2.11.0 wheel in a
# virtualenv), scripts/setup-models.sh (exports the default model) and
# `cargo build --release --bin rerankd`.
#
# GPU: there is no separate GPU image. PyPI's torch wheel for x86_64 Linux is
# the CUDA build (CUDA 13: libtorch_cuda.so plus the nvidia-* wheels' cuBLAS,
# cuDNN, NCCL, … in site-packages/nvidia), and build.rs links libtorch_cuda.so
# in unconditionally, so this one image runs on CPU and, given a GPU (NVIDIA
# Container Toolkit: `--gpus`, compose's device reservations, Kubernetes'
# nvidia.com/gpu), on CUDA with `--devices cuda:0`. The host driver must be new
# enough for CUDA 13 (R580 or later); the container toolkit mounts libcuda and
# libnvidia-ml (NVML, read at run time) from the host. The price is size: the
# CUDA libraries (~3.7 GB with libtorch) are in the image even for CPU use, and
# the binary needs them to start at all (they are NEEDED by libtorch_cpu.so).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------
# builder: Rust 1.95 + Debian's python3 (3.11 on bookworm) + pip/venv
# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# rust:*-bookworm (buildpack-deps) already has gcc/g++ (torch-sys compiles C++),
# binutils (readelf, used below) and util-linux (flock, used by setup-models.sh).
# Unpinned on purpose: Debian stable only ships fixes, and exact pins break
# the build at every point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 --version

# Everything the scripts cache (the venv, the exported models) goes under
# /opt/rerankd/cache instead of ~/.cache/rerankd. The path matters: build.rs
# gives the binary an rpath to the venv's torch/lib (torch-sys reports it as
# DEP_TCH_LIBTORCH_LIB), and the runtime stage keeps that exact path.
ENV RERANKD_CACHE=/opt/rerankd/cache \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# 1. The venv (torch 2.11.0, ~5 GB): its own layer, rebuilt only when
#    setup-venv.sh (which pins every version) changes.
COPY scripts/setup-venv.sh scripts/setup-venv.sh
RUN bash scripts/setup-venv.sh

# 2. The models: rebuilt when the exporter (scripts/export/: the code, the
#    configs) or setup-models.sh change, and only then.
COPY scripts/setup-models.sh scripts/setup-models.sh
COPY scripts/export/ scripts/export/
RUN bash scripts/setup-models.sh

# 3. The binary. Cache mounts keep crates.io downloads and incremental build
#    output between builds; the binary is copied out within the same RUN.
#    `COPY . .` must bring crates/ too: Cargo.toml is a workspace whose
#    members cargo loads even for --bin rerankd, and crates/rerankd-api's
#    build.rs compiles proto/ into the gRPC code the server serves.
COPY . .
RUN --mount=type=cache,id=rerankd-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=rerankd-target,target=/src/target \
    . scripts/env.sh \
 && cargo build --release --locked --bin rerankd \
 && install -D -m 0755 target/release/rerankd /stage/usr/local/bin/rerankd

# 4. Stage exactly what the runtime needs, at the same absolute paths:
#    - torch/lib, at the path the binary's rpath names (read back from the
#      binary, so nothing here hard-codes the venv's versioned name);
#    - site-packages/nvidia, which torch/lib's own rpath reaches as
#      $ORIGIN/../../nvidia/*/lib (CUDA runtime, cuBLAS, cuDNN, NCCL, …);
#    - the exported default model, at /opt/rerankd/models/minilm-pair;
#    - /opt/rerankd/libtorch, a stable symlink to torch/lib for humans.
RUN rpath="$(readelf -d /stage/usr/local/bin/rerankd | sed -n 's/.*(R[UN]*PATH).*\[\(.*\)\]/\1/p')" \
 && libdir="$(printf '%s\n' "${rpath}" | tr ':' '\n' | while read -r d; do if [ -f "$d/libtorch_cpu.so" ]; then echo "$d"; fi; done | head -n 1)" \
 && echo "rpath: ${rpath}; libtorch: ${libdir}" \
 && test -n "${libdir}" \
 && site="$(dirname "$(dirname "${libdir}")")" \
 && mkdir -p "/stage${libdir}" "/stage${site}/nvidia" /stage/opt/rerankd/models \
 && cp -a "${libdir}/." "/stage${libdir}/" \
 && rm -f "/stage${libdir}/libtorch_python.so" \
 && cp -a "${site}/nvidia/." "/stage${site}/nvidia/" \
 && ln -s "${libdir}" /stage/opt/rerankd/libtorch \
 && models="$(bash scripts/setup-models.sh | tail -n 1)" \
 && cp -a "${models}/minilm-pair" /stage/opt/rerankd/models/minilm-pair \
 && du -sh /stage

# ---------------------------------------------------------------------------
# runtime: Debian slim of the same release (same glibc and libstdc++ as the
# builder); no Python, no Rust, no compilers.
# ---------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Nothing to install: the binary needs only glibc and libstdc++ from the
# system (everything else is in torch/lib and site-packages/nvidia).
RUN groupadd --system --gid 10001 rerankd \
 && useradd --system --uid 10001 --gid rerankd --home-dir /home/rerankd --create-home \
      --shell /usr/sbin/nologin rerankd

COPY --from=builder /stage/ /

# Fail the build here, not at `docker run`, if libtorch or a CUDA library does
# not resolve through the rpath (no LD_LIBRARY_PATH is needed or set).
RUN if ldd /usr/local/bin/rerankd | grep 'not found'; then exit 1; fi \
 && /usr/local/bin/rerankd serve --help > /dev/null

# Every flag is also an environment variable (`rerankd serve --help`).
# Drain/grace: after SIGTERM, health goes NOT_SERVING at once, accepting goes
# on for the drain delay, and the server exits within the grace period (drain
# included); orchestrators must wait longer than that before SIGKILL
# (docker-compose.yml: stop_grace_period 45s; k8s: terminationGracePeriodSeconds 45).
ENV RERANKD_MODEL=/opt/rerankd/models/minilm-pair \
    RERANKD_ADDR=0.0.0.0:50051 \
    RERANKD_HTTP_ADDR=0.0.0.0:8080 \
    RERANKD_METRICS_ADDR=0.0.0.0:9400 \
    RERANKD_DEVICES=cpu \
    RERANKD_DTYPE=auto \
    RERANKD_DRAIN_DELAY_SECS=5 \
    RERANKD_GRACE_PERIOD_SECS=30 \
    RERANKD_LOG_FORMAT=json \
    HOME=/home/rerankd

USER 10001:10001
WORKDIR /home/rerankd

# 50051: gRPC (rerank.v1.Reranker, tei.v1, grpc.health.v1, reflection),
# plaintext HTTP/2 unless RERANKD_TLS_CERT/RERANKD_TLS_KEY are set.
# 8080: the HTTP API (POST /v1/rerank, /v2/rerank, /rerank; GET /health, /info,
# /metrics, / the status page), plaintext HTTP/1.1. 9400: GET /metrics.
EXPOSE 50051 8080 9400

# No HEALTHCHECK: a useful one speaks grpc.health.v1 (the port is bound, and
# answers NOT_SERVING, while the model loads), and no such client is in the
# image; Envoy (docker-compose.yml) and the kubelet (deploy/k8s) do it natively.
#
# This is `rerankd serve --model $RERANKD_MODEL`: the model comes from the
# environment so that `docker run IMAGE --devices cuda:0` (extra flags as
# arguments) and `-e RERANKD_MODEL=/other/model` both work. rerankd runs as
# PID 1 and handles SIGTERM/SIGINT itself (graceful drain), so no init is needed.
ENTRYPOINT ["/usr/local/bin/rerankd", "serve"]
CMD []
