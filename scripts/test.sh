#!/usr/bin/env bash
# The whole test suite: installs Pebble if missing, then runs every test
# (unit, doc, Pebble integration) with all features. With CI=true a missing
# Pebble is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
