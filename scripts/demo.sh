#!/usr/bin/env bash
# The demo: issue a certificate with examples/issue against a local Pebble
# (started here, real http-01 validation through the example's built-in
# responder). Everything stays on 127.0.0.1. Output in ./demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --example issue

work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Pebble ships no TLS key: make a throwaway CA and a listener certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=demo listener CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/key.pem" -out "$work/csr.pem" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/ext"
openssl x509 -req -in "$work/csr.pem" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null

cat > "$work/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
 "certificate": "$work/cert.pem", "privateKey": "$work/key.pem",
 "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
pebble-challtestsrv -dns01 127.0.0.1:8053 -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
  -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055 >"$work/dns.log" 2>&1 &
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$work/pebble.json" \
  -dnsserver 127.0.0.1:8053 >"$work/pebble.log" 2>&1 &
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/14000) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/8055) 2>/dev/null && break
  sleep 0.1
done

./target/debug/examples/issue --directory https://127.0.0.1:14000/dir --root-ca "$work/ca.pem" \
  --domain demo.example.com --domain www.demo.example.com \
  --challenge http-01 --http-bind 127.0.0.1 --http-port 5002 \
  --account-key demo-out/account.pem --out demo-out
openssl x509 -in demo-out/cert.pem -noout -subject -issuer -ext subjectAltName
