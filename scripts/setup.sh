#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: Pebble (which
# ships pebble-challtestsrv), python3 for the repository checks, and the
# rustfmt/clippy components. Idempotent.
set -euo pipefail

need_apt=()
command -v pebble >/dev/null 2>&1 || need_apt+=(pebble)
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

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt || echo 'warning: rustfmt missing'
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy || echo 'warning: clippy missing'
fi
