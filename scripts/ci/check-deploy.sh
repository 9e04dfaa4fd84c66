#!/usr/bin/env bash
# Validates the deployment files offline, each with a real validator (installed
# beforehand by scripts/ci/install-tools.sh deploy, which says where each comes
# from):
#
#   docker-compose.yml        Docker Compose v2's own `config` (schema, types,
#                             interpolation, merge keys), with the default and
#                             the `gpu` profile: `docker compose` if the plugin
#                             is installed, else the Compose v2 binary the
#                             installer unpacked.
#   deploy/envoy/envoy.yaml   Envoy itself: `envoy --mode validate`, the
#                             image's version; deprecated fields count as
#                             errors.
#   deploy/prometheus/*.yml   `promtool check config` (Debian bookworm's 2.42
#                             unless one is on PATH). The compose image is
#                             v3.5.0; the file uses only fields both versions
#                             know.
#   deploy/k8s/*.yaml         kubernetes-validate --strict (Kubernetes' OpenAPI
#                             schemas, unknown fields rejected) against
#                             Kubernetes 1.27 and 1.37. Not a cluster's
#                             admission: no kubeconform/kubectl server here.
#   Dockerfile                hadolint. It is not built: no Docker engine here.
#   all of them               cross-checks (deploy_cross_checks.py beside this
#                             script): ports 50051/9400/8080/9901, the health
#                             service name "rerank.v1.Reranker", replica names,
#                             profiles and GPU reservations, probes, grace
#                             periods.
#
# Takes a few seconds. Installs nothing: without the tools it says how to
# install them and exits 1.
#
# Usage: scripts/ci/check-deploy.sh [--self-test] [ROOT]
#   ROOT         a tree holding Dockerfile, docker-compose.yml and deploy/
#                (default: this repository)
#   --self-test  also checks deliberately broken copies (typo'd keys, a wrong
#                port, a short grace period, …) and fails unless every one
#                is caught
# Exits non-zero on any problem.
# Owns: which validator checks which file, and the self-test's mutations.
# Must never: install or download anything, or change the files it checks.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

SELF_TEST=0
ROOT=""
for arg in "$@"; do
  case "$arg" in
    --self-test) SELF_TEST=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*) echo "check-deploy: unknown option $arg" >&2; exit 2 ;;
    *) ROOT="$arg" ;;
  esac
done
ROOT="$(cd "${ROOT:-$HERE/../..}" && pwd)"

# The Kubernetes versions whose schemas the manifests must pass.
K8S_VERSIONS=(1.27.0 1.37.0)

log() { echo "check-deploy: $*" >&2; }
die() { log "$*"; exit 1; }

TOOLS="$(bash "$HERE/install-tools.sh" --installed deploy)" || exit 1
# shellcheck source=/dev/null  # written by install-tools.sh: ENVOY_VERSION, HADOLINT_VERSION, ...
source "$TOOLS/versions.env"
PY="$TOOLS/bin/python"
ENVOY="$TOOLS/bin/envoy"
HADOLINT="$TOOLS/bin/hadolint"
KUBERNETES_VALIDATE="$TOOLS/bin/kubernetes-validate"
PROMTOOL="$TOOLS/bin/promtool"
if docker compose version > /dev/null 2>&1; then
  COMPOSE=(docker compose)
elif [[ -x "$TOOLS/bin/docker-compose" ]]; then
  COMPOSE=("$TOOLS/bin/docker-compose")
else
  die "no docker compose plugin and no docker-compose in $TOOLS/bin: re-run bash scripts/ci/install-tools.sh deploy"
fi

# --------------------------------------------------------------------------
# Self-test: broken copies must fail, the real tree must pass.
# --------------------------------------------------------------------------
if [[ $SELF_TEST -eq 1 ]]; then
  "$SELF" "$ROOT" || die "self-test: the real files do not pass"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  # file | sed expression | what it breaks (the stage that must catch it)
  MUTATIONS=(
    "deploy/envoy/envoy.yaml|s/lb_policy: ROUND_ROBIN/lb_polcy: ROUND_ROBIN/|typo'd Envoy key (envoy)"
    "deploy/envoy/envoy.yaml|s/service_name: rerank.v1.Reranker/service_name: rerank.v1.Rerank/|wrong health service name (cross-checks)"
    "deploy/envoy/envoy.yaml|s/port_value: 8080/port_value: 8081/|Envoy listener port != compose (cross-checks)"
    "docker-compose.yml|s/stop_grace_period: 45s/stop_grace_perod: 45s/|typo'd compose key (compose)"
    "docker-compose.yml|s/RERANKD_METRICS_ADDR: 0.0.0.0:9400/RERANKD_METRICS_ADDR: 0.0.0.0:9500/|metrics port != Prometheus target (cross-checks)"
    "docker-compose.yml|s/stop_grace_period: 45s/stop_grace_period: 20s/|stop_grace_period <= grace period (cross-checks)"
    "docker-compose.yml|s/capabilities: \[gpu\]/capabilities: [compute]/|GPU reservation without gpu capability (cross-checks)"
    "deploy/prometheus/prometheus.yml|s/metrics_path: \/metrics/metrics_pth: \/metrics/|typo'd Prometheus key (promtool)"
    "deploy/k8s/deployment.yaml|s/readinessProbe:/readinesProbe:/|typo'd k8s key (kubernetes)"
    "deploy/k8s/deployment.yaml|s/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 30/|grace period too short (cross-checks)"
    "deploy/k8s/deployment.yaml|s/service: rerank.v1.Reranker/service: rerank.Reranker/|k8s readiness service name (cross-checks)"
    "deploy/k8s/service.yaml|s/clusterIP: None/clusterIP: \"\"/|no headless Service (cross-checks)"
    "Dockerfile|s/^EXPOSE 50051 9400/EXPOSE 50051/|Dockerfile does not expose 9400 (cross-checks)"
    "Dockerfile|s/^USER 10001:10001/USER root/|Dockerfile runs as root (cross-checks)"
  )
  failed=0
  n=0
  for m in "${MUTATIONS[@]}"; do
    IFS='|' read -r file expr what <<< "$m"
    n=$((n + 1))
    copy="$WORK/$n"
    mkdir -p "$copy"
    cp -a "$ROOT/Dockerfile" "$ROOT/docker-compose.yml" "$ROOT/deploy" "$copy/"
    [[ -f "$ROOT/.dockerignore" ]] && cp "$ROOT/.dockerignore" "$copy/"
    [[ -f "$ROOT/Cargo.toml" ]] && cp "$ROOT/Cargo.toml" "$copy/"
    cp "$copy/$file" "$copy/$file.orig"
    sed -i "$expr" "$copy/$file"
    if cmp -s "$copy/$file" "$copy/$file.orig"; then
      log "self-test: mutation '$what' changed nothing in $file (update the self-test)"
      failed=1
      continue
    fi
    rm "$copy/$file.orig"
    if out="$("$SELF" "$copy" 2>&1)"; then
      log "self-test: NOT caught: $what"
      failed=1
    else
      caught="$(grep -o '^FAIL [a-z-]*' <<< "$out" | sed 's/^FAIL //' | sort -u | tr '\n' ' ')"
      expected="${what##*(}"
      expected="${expected%)}"
      if [[ " $caught" == *" $expected "* ]]; then
        echo "self-test: caught: $what; failing stages: $caught"
      else
        log "self-test: $what was rejected, but not by stage '$expected' (by: ${caught:-none}):"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        failed=1
      fi
    fi
  done
  [[ $failed -eq 0 ]] || die "self-test FAILED"
  echo "self-test: all $n broken copies rejected, real files pass"
  exit 0
fi

# --------------------------------------------------------------------------
# The checks: each stage runs, its output is shown when it fails.
# --------------------------------------------------------------------------
cd "$ROOT"
for f in Dockerfile docker-compose.yml deploy/envoy/envoy.yaml deploy/prometheus/prometheus.yml deploy/k8s/deployment.yaml deploy/k8s/service.yaml; do
  [[ -f "$f" ]] || die "missing $ROOT/$f"
done

FAILED=()
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
stage() {
  local name="$1" what="$2"
  shift 2
  if "$@" > "$OUT/$name.log" 2>&1; then
    printf 'PASS %-18s %s\n' "$name" "$what"
  else
    printf 'FAIL %-18s %s\n' "$name" "$what"
    sed 's/^/    /' "$OUT/$name.log" | tail -n 40
    FAILED+=("$name")
  fi
}

compose_config() {
  local json="$1"
  shift
  "${COMPOSE[@]}" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" "$@" config --quiet \
    && "${COMPOSE[@]}" --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" "$@" config --format json > "$OUT/$json"
}
envoy_validate() {
  local log="$OUT/envoy-validate.txt"
  "$ENVOY" --mode validate -c "$ROOT/deploy/envoy/envoy.yaml" --log-level warn > "$log" 2>&1 || {
    cat "$log"
    return 1
  }
  cat "$log"
  if grep -qi 'deprecated' "$log"; then
    echo "deprecated Envoy fields (above): replace them"
    return 1
  fi
}
k8s_validate() {
  local v
  for v in "${K8S_VERSIONS[@]}"; do
    "$KUBERNETES_VALIDATE" --strict -k "$v" --quiet deploy/k8s/*.yaml || return 1
  done
}

COMPOSE_WHAT="$("${COMPOSE[@]}" version --short 2> /dev/null || true)"
stage compose "docker-compose.yml: ${COMPOSE[*]##*/} config ($COMPOSE_WHAT), default profile" compose_config compose-default.json
stage compose-gpu "docker-compose.yml: ${COMPOSE[*]##*/} config ($COMPOSE_WHAT), --profile gpu" compose_config compose-gpu.json --profile gpu
stage envoy "deploy/envoy/envoy.yaml: envoy $ENVOY_VERSION --mode validate" envoy_validate
stage promtool "deploy/prometheus/prometheus.yml: $("$PROMTOOL" --version 2>&1 | head -n 1 | sed 's/ (.*//')" "$PROMTOOL" check config deploy/prometheus/prometheus.yml
stage kubernetes "deploy/k8s/*.yaml: kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict, k8s ${K8S_VERSIONS[*]}" k8s_validate
stage hadolint "Dockerfile: hadolint $HADOLINT_VERSION" "$HADOLINT" --no-color Dockerfile
stage cross-checks "ports, names, health service, probes, grace periods across all files" \
  "$PY" "$HERE/deploy_cross_checks.py" "$ROOT" "$OUT/compose-default.json" "$OUT/compose-gpu.json" "$ENVOY_VERSION"

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "check-deploy: FAILED: ${FAILED[*]}"
  exit 1
fi
echo "check-deploy: all deployment files valid and consistent ($ROOT)"
