#!/usr/bin/env bash
# ensure-tools.sh checks for what the local stack needs beyond Go — PostgreSQL server binaries
# and Node.js with npm — and installs them with apt-get when run as root on Debian/Ubuntu.
# Otherwise it stops with a message naming the package to install. Used by make demo/test/bench.
# Chromium (for the preference page's browser test) is optional: installed the same way where
# possible, else the test skips and says why.
set -euo pipefail

need=()
have_pg() {
  [ -n "${TAILOR_PG_BINDIR:-}" ] && [ -x "$TAILOR_PG_BINDIR/initdb" ] && return 0
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
command -v go >/dev/null 2>&1 || { echo "ensure-tools: Go is missing: install Go 1.26+ (https://go.dev/dl/)" >&2; exit 1; }
have_pg || need+=(postgresql)
{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || need+=(nodejs npm)

if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing ${need[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "ensure-tools: missing ${need[*]}: install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) and run make again" >&2
    exit 1
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "ensure-tools: Node.js $node_major is too old for the emulators: install Node.js 18 or newer" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && ! id -u "${TAILOR_PG_OS_USER:-postgres}" >/dev/null 2>&1; then
  # Postgres refuses to run as root; the local stack runs it as this unprivileged user.
  echo "ensure-tools: creating system user ${TAILOR_PG_OS_USER:-postgres} to run the local Postgres" >&2
  useradd --system --no-create-home --shell /usr/sbin/nologin "${TAILOR_PG_OS_USER:-postgres}"
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: installing chromium with apt-get (for the preference page's browser test)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; } ||
      echo "ensure-tools: could not install chromium: the browser test will skip" >&2
  else
    echo "ensure-tools: chromium is missing (Debian/Ubuntu: sudo apt-get install chromium): the browser test will skip" >&2
  fi
fi

if ! command -v promtool >/dev/null 2>&1; then
  # Optional, and not installed from here: Debian ships promtool only inside the prometheus
  # package, whose service would start a Prometheus server on :9090 of a systemd machine.
  echo "ensure-tools: promtool is missing (Debian/Ubuntu: sudo apt-get install prometheus): the alert rules' promtool check will skip" >&2
fi
