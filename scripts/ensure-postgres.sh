#!/usr/bin/env bash
# Makes sure a PostgreSQL server is there for the tests and exports its URL as
# SMARTLAUNCH_TEST_DATABASE_URL (a server where that user may create databases: each test
# creates its own and drops it).  Source it:  . scripts/ensure-postgres.sh
#
# 1. SMARTLAUNCH_TEST_DATABASE_URL already set: used as it is.
# 2. The machine's own server on 127.0.0.1:5432 accepting `root` (trust auth): used.
# 3. Otherwise Debian's package is installed and started, with a role for the tests.
# Any failure stops the run: a missing PostgreSQL never turns into skipped tests.

ensure_postgres() {
  if [ -n "${SMARTLAUNCH_TEST_DATABASE_URL:-}" ]; then
    echo "PostgreSQL for the tests: $SMARTLAUNCH_TEST_DATABASE_URL (given)"
    return 0
  fi
  local own="postgres://root@127.0.0.1:5432/postgres"
  if command -v psql >/dev/null 2>&1 && psql "$own" -tAc 'SELECT 1' >/dev/null 2>&1; then
    export SMARTLAUNCH_TEST_DATABASE_URL="$own"
    echo "PostgreSQL for the tests: $own (this machine's)"
    return 0
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "installing postgresql (Debian package) for the PostgreSQL tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  if [ -z "$version" ]; then
    echo "error: no PostgreSQL server under /usr/lib/postgresql after installing it" >&2
    return 1
  fi
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >/dev/null
  fi
  pg_ctlcluster "$version" main start 2>/dev/null || true
  local port
  port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')"
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
  done
  if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    echo "error: PostgreSQL $version did not start on port $port" >&2
    return 1
  fi
  # A password role that may create (and so drop) its own databases.
  su postgres -c "psql -p $port -qtAc \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'smartlaunch_test') THEN CREATE ROLE smartlaunch_test LOGIN CREATEDB PASSWORD 'smartlaunch_test'; END IF; END \\\$\\\$\""
  export SMARTLAUNCH_TEST_DATABASE_URL="postgres://smartlaunch_test:smartlaunch_test@127.0.0.1:$port/postgres"
  echo "PostgreSQL for the tests: $SMARTLAUNCH_TEST_DATABASE_URL (Debian's postgresql $version)"
}

ensure_postgres
