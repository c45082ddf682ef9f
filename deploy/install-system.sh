#!/usr/bin/env bash
# Install the system parts EOFusion needs on Debian/Ubuntu, idempotently:
# PostgreSQL 15 + PostGIS 3 + pgvector 0.8 (built from Debian's trixie source package,
# since bookworm ships no binary), GDAL's command-line tools, and Chromium for page tests.
# Every step is skipped when its result is already present.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-system] %s\n' "$*"; }

need_pkgs=()
want=(
  "postgresql-${PG_MAJOR}"
  "postgresql-${PG_MAJOR}-postgis-3"
  "postgresql-server-dev-${PG_MAJOR}"
  dpkg-dev build-essential
  gdal-bin
  chromium python3-venv
)
if [ -n "${EOFUSION_INSTALL_QGIS:-}" ]; then
  want+=(python3-qgis qgis-providers)
fi
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "apt-get install ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# pgvector: present when the control file is installed for this major version.
sharedir="$($PG_CONFIG --sharedir)"
if [ ! -f "${sharedir}/extension/vector.control" ]; then
  log "building pgvector from Debian's trixie source package"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # A private apt configuration so the user's sources stay untouched.
  mkdir -p "$work/apt/sources.list.d" "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/apt/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$work/apt/sources.list"
           -o "Dir::Etc::SourceParts=$work/apt/sources.list.d"
           -o "Dir::State::Lists=$work/apt/lists"
           -o "Dir::Cache=$work/apt/cache"
           -o "APT::Sandbox::User=root")
  $SUDO apt-get "${aptopts[@]}" update -qq
  (cd "$work" && $SUDO apt-get "${aptopts[@]}" source -qq pgvector >/dev/null)
  src="$(find "$work" -maxdepth 1 -type d -name 'pgvector-*' | head -n1)"
  [ -n "$src" ] || { log "pgvector source not found"; exit 1; }
  $SUDO make -s -C "$src" PG_CONFIG="$PG_CONFIG" >/dev/null
  $SUDO make -s -C "$src" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
log "PostgreSQL $($PG_CONFIG --version), PostGIS and pgvector ready"
