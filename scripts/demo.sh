#!/usr/bin/env bash
# The demo: issue a certificate with the `acme` tool (cli/) against the embedded test
# CA (started in-process; http-01 really validated against the tool's own
# responder on a loopback port). Needs nothing but cargo. Output: ./demo-out/
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -p sturdy-acme-cli --bin acme -- issue --directory embedded \
  --domain demo.example --domain www.demo.example --out demo-out
echo "demo-out/fullchain.pem chains to demo-out/ca-root.pem"
