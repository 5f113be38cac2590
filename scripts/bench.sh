#!/usr/bin/env bash
# Issue 10's benchmark set, side by side in one run (README "Benchmarks"):
#   sqlite   the launch loop on the embedded default: signed-in, sandbox (inspector on), both
#            with openid, the RS256 ceiling, the authorized read and the bare endpoint
#   pg       the launch loop on PostgreSQL: one node, then two nodes behind nginx (round-robin)
#   fhir     read and search p50 at 1,000 patients x 200 resources, SQLite and PostgreSQL
#   client   issue 11: `GET Patient/{id}` through smartlaunch-client vs raw reqwest, interleaved
# Usage: scripts/bench.sh [sqlite] [pg] [fhir] [client]   (none: all four).  Needs a release build
# (cargo build --release -p smartlaunch -p smartlaunch-bench), nginx for `pg`, and a PostgreSQL
# (postgres://root@127.0.0.1:5432 by default; BENCH_PG to change it).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=./target/release/smartlaunch
BENCH=./target/release/smartlaunch-bench
PG="${BENCH_PG:-postgres://root@127.0.0.1:5432}"
WORKERS="${BENCH_WORKERS:-8}"
SECONDS_EACH="${BENCH_SECONDS:-6}"
NGINX="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
WORK="$(mktemp -d /tmp/smartlaunch-bench.XXXXXX)"
KEK="$(head -c 32 /dev/urandom | base64)"
export SMARTLAUNCH_KEY_ENCRYPTION_KEY="$KEK"
# No Vitals demo app beside the servers here: it would hold the next port.
LIMITS=(--authorize-rate-limit 0 --token-rate-limit 0 --demo-app off)
PIDS=()
DBS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DBS[@]}"; do psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_up() { # url
  for _ in $(seq 1 300); do curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "not up: $1" >&2; return 1
}

new_db() { # name
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $1" >/dev/null
  psql "$PG/postgres" -qc "CREATE DATABASE $1" >/dev/null
  DBS+=("$1")
  echo "$PG/$1"
}

serve() { # port args...
  local port="$1"; shift
  "$BIN" serve --listen "127.0.0.1:$port" "${LIMITS[@]}" "$@" >"$WORK/serve-$port.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  wait_up "http://127.0.0.1:$port"
}

nginx_in_front() { # port upstream-port...
  local port="$1"; shift
  local dir="$WORK/nginx-$port-$#" servers=""
  mkdir -p "$dir"
  for up in "$@"; do servers+="        server 127.0.0.1:$up;"$'\n'; done
  cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream smartlaunch {
$servers        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://smartlaunch;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_buffering off;
        }
    }
}
EOF
  "$NGINX" -c "$dir/nginx.conf" -p "$dir" >"$dir/stdout.log" 2>&1 &
  PIDS+=($!)
  LAST_NGINX=$!
  wait_up "http://127.0.0.1:$port"
}

launch_bench() { # base pid scenarios...
  local base="$1" pid="$2"; shift 2
  local args=()
  for s in "$@"; do args+=(--scenario "$s"); done
  "$BENCH" launch --base "$base" --workers "$WORKERS" --seconds "$SECONDS_EACH" --server-pid "$pid" "${args[@]}"
}

bench_sqlite() {
  echo "== SQLite, one node =="
  serve 18080 --data "$WORK/sqlite"
  launch_bench http://127.0.0.1:18080 "$LAST_PID" \
    rs256 launch sandbox launch-openid sandbox-openid read bare
}

bench_pg() {
  local url
  url="$(new_db smartlaunch_bench_pg)"
  echo "== PostgreSQL, one node =="
  serve 18091 --data "$WORK/pg-a" --database "$url"
  launch_bench http://127.0.0.1:18091 "$LAST_PID" launch sandbox launch-openid read bare
  kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null || true
  # Behind the proxy the nodes' public URL is the proxy's (the FHIR base tokens are issued for).
  local public=(--public-url http://127.0.0.1:18090)
  echo "== PostgreSQL, one node behind nginx =="
  serve 18091 --data "$WORK/pg-a" --database "$url" "${public[@]}" --trusted-proxy 127.0.0.1
  local a="$LAST_PID"
  nginx_in_front 18090 18091
  local one_nginx="$LAST_NGINX"
  launch_bench http://127.0.0.1:18090 "$a" launch sandbox launch-openid read
  kill "$one_nginx"; wait "$one_nginx" 2>/dev/null || true
  echo "== PostgreSQL, two nodes behind nginx (round-robin) =="
  serve 18092 --data "$WORK/pg-b" --database "$url" "${public[@]}" --trusted-proxy 127.0.0.1
  nginx_in_front 18090 18091 18092
  launch_bench http://127.0.0.1:18090 "$a" launch sandbox launch-openid read
}

bench_fhir() {
  echo "== FHIR reads and searches: 1,000 patients x 200 resources =="
  "$BENCH" generate --patients 1000 --encounters 16 --out "$WORK/gen"  # 201,365 resources
  "$BIN" import --data "$WORK/big" "$WORK/gen"
  serve 18081 --data "$WORK/big"
  echo "-- SQLite"
  "$BENCH" fhir --base http://127.0.0.1:18081 --patient pat-500
  local url
  url="$(new_db smartlaunch_bench_fhir)"
  "$BIN" import --data "$WORK/big-pg" --database "$url" "$WORK/gen"
  serve 18082 --data "$WORK/big-pg" --database "$url"
  echo "-- PostgreSQL"
  "$BENCH" fhir --base http://127.0.0.1:18082 --patient pat-500
}

bench_client() {
  echo "== FHIR reads: smartlaunch-client vs raw reqwest (same reqwest client, interleaved) =="
  serve 18083 --data "$WORK/client"
  launch_bench http://127.0.0.1:18083 "$LAST_PID" read read-client read read-client
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(sqlite pg fhir client)
for part in "${parts[@]}"; do
  case "$part" in
    sqlite) bench_sqlite ;;
    pg) bench_pg ;;
    fhir) bench_fhir ;;
    client) bench_client ;;
    *) echo "unknown part: $part (sqlite, pg, fhir, client)" >&2; exit 2 ;;
  esac
done
