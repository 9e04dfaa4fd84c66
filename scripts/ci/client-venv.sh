# shellcheck shell=bash
# Sourced by the client test scripts (test-clients.sh, test-http-clients.sh, test-tei-client.sh,
# test-auth-clients.sh): `client_venv WHO NAME REQUIREMENTS` sets VENV to a Python venv with
# REQUIREMENTS installed, cached as ~/.cache/rerankd/NAME-<first 16 hex digits of its SHA-256>
# ($RERANKD_CACHE moves ~/.cache/rerankd), and installs it only when it is missing. WHO prefixes
# what it says on stderr.
#
# The venv is built beside its final place and renamed, so a run in parallel (the integration
# tests start several clients at once) never sees half a venv. Debian's python3 without
# python3-venv has no ensurepip: the venv is then made without pip and installed into with the
# system pip (pip >= 22.3).
#
# Owns: the venvs' cache and install. Must never: run a client, or change the requirements.
client_venv() {
  local who="$1" name="$2" requirements="$3"
  local cache="${RERANKD_CACHE:-$HOME/.cache/rerankd}"
  VENV="$cache/$name-$(sha256sum "$requirements" | cut -c1-16)"
  if [[ -f "$VENV/.complete" ]]; then
    echo "$who: python venv ready at $VENV (skipping install)" >&2
    return 0
  fi
  echo "$who: creating python venv $VENV" >&2
  local build="$VENV.building.$$"
  local pip
  rm -rf "$build"
  mkdir -p "$cache"
  if python3 -c 'import ensurepip' 2>/dev/null; then
    echo "+ python3 -m venv $build" >&2
    python3 -m venv "$build"
    pip=("$build/bin/python" -m pip)
  else
    echo "+ python3 -m venv --without-pip $build" >&2
    python3 -m venv --without-pip "$build"
    pip=(python3 -m pip --python "$build/bin/python")
  fi
  echo "+ ${pip[*]} install -r $requirements" >&2
  "${pip[@]}" install --quiet --disable-pip-version-check -r "$requirements"
  touch "$build/.complete"
  if ! mv -T "$build" "$VENV" 2>/dev/null; then
    rm -rf "$build" # Another run finished first; use its venv.
  fi
}
