#!/usr/bin/env bash
# Fleet figures: `Issuer::ensure` through PostgresStore from 4 processes
# versus FileStore from one, against the embedded CA in its own process.
#
#   bash scripts/bench-fleet.sh [SETS]      (default 1000)
#
# Starts a private PostgreSQL (initdb in a temp dir, a free loopback port;
# as the `postgres` user when run as root) and the sturdy-test-ca server, then runs
# examples/fleet:
#   1. FileStore, one process, SETS sets;
#   2. PostgresStore, one process, SETS sets;
#   3. PostgresStore, 4 processes, the same SETS sets each (each set
#      issued once, the other three ensures find it stored or wait);
#   4. PostgresStore, 4 processes, SETS distinct sets each.
# Each prints its JSON summary (ensures per second, store round trips and
# writes per issuance); the wall time of each run is printed after it.
set -euo pipefail
cd "$(dirname "$0")/.."
SETS="${1:-1000}"

cargo build --release --example fleet >/dev/null
cargo build --release -p sturdy-acme-testca --bin sturdy-test-ca >/dev/null
BIN=target/release/examples
WORK="$(mktemp -d /tmp/sturdy-bench-fleet.XXXXXX)"
chmod 755 "$WORK"
PGBIN="$(dirname "$(readlink -f "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
AS=()
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); fi
mkdir -p "$WORK/pg" && [ ${#AS[@]} -gt 0 ] && chown postgres "$WORK/pg"
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg/data" -U sturdy -A trust --locale=C -E UTF8 >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$WORK/pg -c max_connections=300" start >/dev/null
cleanup() {
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
  [ -n "${CA_PID:-}" ] && kill "$CA_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U sturdy acme

"$BIN/../sturdy-test-ca" --port 0 --root-out "$WORK/root.pem" > "$WORK/ca.out" 2>/dev/null &
CA_PID=$!
for _ in $(seq 100); do [ -s "$WORK/ca.out" ] && break; sleep 0.1; done
DIR="$(head -1 "$WORK/ca.out")"
DB="postgres://sturdy@127.0.0.1:$PORT/acme"

run() {
  local label="$1"; shift
  local started ended
  started=$(date +%s.%N)
  "$@"
  ended=$(date +%s.%N)
  echo "== $label: wall $(python3 -c "print(round($ended - $started, 2))") s"
}
fleet() { "$BIN/fleet" --directory "$DIR" --root-ca "$WORK/root.pem" --sets "$SETS" --concurrency 50 "$@" | tail -1; }

run "FileStore, 1 process, $SETS sets" fleet --store "$WORK/files" --prefix f
run "PostgresStore, 1 process, $SETS sets" fleet --store "$DB" --prefix p
run "PostgresStore, 4 processes, the same $SETS sets" bash -c "
  for i in 1 2 3 4; do
    '$BIN/fleet' --directory '$DIR' --root-ca '$WORK/root.pem' --sets $SETS --concurrency 50 \
      --store '$DB' --prefix s --seed \$i | tail -1 &
  done; wait"
run "PostgresStore, 4 processes, $SETS distinct sets each" bash -c "
  for i in 1 2 3 4; do
    '$BIN/fleet' --directory '$DIR' --root-ca '$WORK/root.pem' --sets $SETS --concurrency 50 \
      --store '$DB' --prefix d\$i- --seed \$i | tail -1 &
  done; wait"
