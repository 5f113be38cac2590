#!/usr/bin/env bash
# The test command: Rust unit and integration tests (real HTTP, real SQLite), then the browser
# end-to-end tests (the official JavaScript SMART client in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package) for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

cargo test --workspace --locked
cargo build --locked -p smartlaunch

# A real backend-services client (PyJWT + cryptography + requests, pinned) against the binary:
# private_key_jwt tokens and a complete Bulk Data $export.
python3 -m venv target/interop-venv
target/interop-venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
target/interop-venv/bin/python tests/interop/backend_services.py target/debug/smartlaunch

cd tests/e2e
npm ci --no-audit --no-fund --loglevel=error
npm test
