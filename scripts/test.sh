#!/usr/bin/env bash
# The test command: Rust unit and integration tests (real HTTP, real SQLite, and the store on a
# real PostgreSQL), then the browser end-to-end tests (the official JavaScript SMART client in
# headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# nginx (Debian package): the proxy of the two-node tests (issue 10); the tests start their own
# (daemon off, configuration and logs in a temporary directory), never the system's service.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (Debian package) for the two-node tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
export NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# PostgreSQL: this machine's, or Debian's package installed and started (exports
# SMARTLAUNCH_TEST_DATABASE_URL; fails the run if it cannot).
. scripts/ensure-postgres.sh

# Where cargo puts the binary: ./target, or $CARGO_TARGET_DIR (or a configured target-dir).
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# The pinned Python packages of tests/interop, in a venv: a backend-services client (PyJWT,
# cryptography, requests) and an Authlib authorization server that the Rust client library is
# tested against (crates/smartlaunch-client/tests/authlib.rs reads SMARTLAUNCH_INTEROP_PYTHON).
python3 -m venv "$target_dir/interop-venv"
"$target_dir/interop-venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
export SMARTLAUNCH_INTEROP_PYTHON="$target_dir/interop-venv/bin/python"

cargo test --workspace --locked
cargo build --locked -p smartlaunch
export SMARTLAUNCH_BIN="$target_dir/debug/smartlaunch"

# A real backend-services client against the binary: private_key_jwt tokens and a complete
# Bulk Data $export.
"$SMARTLAUNCH_INTEROP_PYTHON" tests/interop/backend_services.py "$SMARTLAUNCH_BIN"

cd tests/e2e
npm ci --no-audit --no-fund --loglevel=error
npm test
# The browser suite once more through nginx in front of two nodes on one PostgreSQL database
# (issue 10, "the browser e2e suite passes through the proxy"); every request may land on
# either node.  Adds about as long as the run above.
SMARTLAUNCH_E2E_PROXY=1 SMARTLAUNCH_E2E_DATABASE_URL="$SMARTLAUNCH_TEST_DATABASE_URL" npm test
