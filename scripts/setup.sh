#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: Pebble (which
# ships pebble-challtestsrv), Knot DNS (knotd, knotc), the PostgreSQL server (Debian puts initdb,
# pg_ctl and postgres in /usr/lib/postgresql/<version>/bin, not in PATH; the
# tests find them there), python3 for the repository checks, and the
# rustfmt/clippy components. Idempotent. The PostgreSQL test harness also
# uses runuser (util-linux, always present on Debian) when run as root.
set -euo pipefail

# The PostgreSQL harness (tests/support/src/postgres.rs) looks in the same places.
have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  local bin
  for bin in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$bin" ] && return 0
  done
  return 1
}

need_apt=()
command -v pebble >/dev/null 2>&1 || need_apt+=(pebble)
have_initdb || need_apt+=(postgresql)
# Knot DNS: the authoritative servers of the dns-01 / CAA tests
# (tests/support/src/knot.rs runs knotd and knotc).
[ -x /usr/sbin/knotd ] || command -v knotd >/dev/null 2>&1 || need_apt+=(knot)
# libfaketime: the PostgreSQL server of the clock-skew tests runs under it
# (tests/support/src/postgres.rs, Postgres::start_with_clock_offset).
compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null || need_apt+=(faketime)
# The architecture and documentation checks in .ci/run are Python scripts.
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "== installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null
have_initdb
[ -x /usr/sbin/knotd ] || command -v knotd >/dev/null

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt || echo 'warning: rustfmt missing'
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy || echo 'warning: clippy missing'
fi
