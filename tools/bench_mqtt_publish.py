"""Node-to-broker publish rate at QoS 1 on the MicroPython VM, with and without batching and
TCP_NODELAY: the firmware's MqttUplink against a throwaway mosquitto on loopback.

    python -m tools.bench_mqtt_publish
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.brokers import make_broker  # noqa: E402
from tests.mpvm import micropython_exe, mp_env  # noqa: E402

CASES = [(1, "0"), (1, "1"), (20, "1"), (80, "1")]  # (records per batch, TCP_NODELAY)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        b = make_broker(Path(tmp) / "broker").start()
        try:
            for per, nodelay in CASES:
                p = subprocess.run(
                    [micropython_exe(), "-X", "heapsize=192K", str(REPO / "firmware/tests/bench_publish.py"),
                     str(b.port), str(per), nodelay],
                    env=mp_env(home=tmp), capture_output=True, text=True, timeout=60,
                )
                print(p.stdout.strip() or p.stderr.strip()[-400:])
        finally:
            b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
