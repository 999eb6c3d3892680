#!/usr/bin/env bash
# Install what is missing, then run every test (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh dev
exec .venv/bin/python -m pytest -q -n "${VIBEKIT_JOBS:-2}" "$@"
