#!/usr/bin/env bash
# Quickstart command 2: installs what is missing, builds, runs every test.
# Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
# End-to-end tests start real daemons and agents; they run one at a time.
ctest --output-on-failure --timeout 600 -j "${JOBS:-$(nproc)}"
