#!/usr/bin/env bash
# The demo: virtual nodes (the real firmware on the MicroPython VM), an embedded broker, the
# bridge, Modbus TCP on 127.0.0.1:5020 and OPC UA on opc.tcp://127.0.0.1:4840, and a live
# table of values until Ctrl-C. No hardware, no root. Extra arguments go to `host-bridge demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh demo
exec .venv/bin/host-bridge demo "$@"
