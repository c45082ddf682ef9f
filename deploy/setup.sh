#!/usr/bin/env bash
# One command for a fresh Debian/Ubuntu machine:
#   deploy/setup.sh demo   install everything, load the bundled demo scene, serve it on :8000
#   deploy/setup.sh test   install everything (plus the GIS clients the tests drive), run the tests
# Every step is idempotent: a second run only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2;; esac

log() { printf '[setup] %s\n' "$*"; }

# 1. System packages: PostgreSQL 15 + PostGIS 3 + pgvector 0.8, GDAL tools, Chromium (and QGIS for tests).
if [ "$mode" = test ]; then export EOFUSION_INSTALL_QGIS=1; fi
bash deploy/install-system.sh

# 2. Python 3.11 environment with pinned dependencies (torch from the local CPU wheel).
PY="${PYTHON:-$(command -v python3.11 || true)}"
[ -n "$PY" ] || { echo "Python 3.11 is required (python3.11 not found)" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.eofusion-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python dependencies (a few minutes the first time)"
  .venv/bin/pip install -q --disable-pip-version-check -U pip wheel setuptools
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
# numba compiles the WLD kernel into its on-disk cache once here, not in every ingest worker at once.
.venv/bin/python -c "from eofusion.features.wld_kernel import warm_up; warm_up()"
# The static text embedder's token table is distilled from MiniLM (in its wheel) into the data folder's cache once
# (~20-45 s), not at the first ingest or query that needs it.
.venv/bin/python -c "from eofusion.social.embedding import warm_up_static; warm_up_static()"

# 3. Leaflet for the /viewer map page, bundled from the npm registry into server/static/viewer/vendor/
#    (not committed, never loaded from a CDN); rebuilt only when missing or package.json changed.
viewer=server/static/viewer
vendor="$viewer/vendor/leaflet"
if [ ! -f "$vendor/leaflet.js" ] || [ ! -f "$vendor/leaflet.css" ] || [ ! -d "$vendor/images" ] \
   || ! cmp -s "$viewer/package.json" "$vendor/.package.json"; then
  if ! command -v npm >/dev/null; then
    log "installing npm (Debian package)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  log "bundling Leaflet for /viewer with npm"
  build="$(mktemp -d)"
  cp "$viewer/package.json" "$build/"
  (cd "$build" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
  rm -rf "$vendor.tmp" && mkdir -p "$vendor.tmp"
  cp "$build/node_modules/leaflet/dist/leaflet.js" "$build/node_modules/leaflet/dist/leaflet.css" \
     "$build/node_modules/leaflet/LICENSE" "$vendor.tmp/"
  cp -R "$build/node_modules/leaflet/dist/images" "$vendor.tmp/images"
  cp "$viewer/package.json" "$vendor.tmp/.package.json"
  rm -rf "$vendor" && mv "$vendor.tmp" "$vendor" && rm -rf "$build"
fi

if [ "$mode" = demo ]; then
  # Further arguments go to `eofusion demo` (e.g. --tweets PATH; or set EOFUSION_DEMO_TWEETS).
  exec .venv/bin/eofusion demo --port "${EOFUSION_PORT:-8000}" "${@:2}"
fi

# 4. The OGC API Features test suite lives in its own environment: its pins clash with ours.
if [ ! -x .venv-ogctests/bin/python ] || ! .venv-ogctests/bin/python -c 'import ogctests' 2>/dev/null; then
  log "installing the ogctests suite into .venv-ogctests"
  "$PY" -m venv .venv-ogctests
  .venv-ogctests/bin/pip install -q --disable-pip-version-check ogctests==0.1.15
fi

log "running the tests"
set +e
.venv/bin/python -m pytest "${@:2}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
