#!/usr/bin/env bash
# The whole test suite of every crate: installs Pebble, PostgreSQL, Knot and
# libfaketime if missing, then runs every test (unit, integration, doc) with
# the default features. With CI=true a missing server is a failure, never a
# skip. Benchmarks (benches/, no harness) are built by clippy, never run
# here: `--all-targets` would run their `main`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --lib --bins --tests --examples "$@"
cargo test --workspace --doc
