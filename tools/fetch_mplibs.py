"""Fetch the third-party MicroPython libraries the firmware needs into <repo>/.mplib.

Only umqtt.simple today. It is never copied into git: PyPI carries it as the sdist
`micropython-umqtt.simple` (no setup.py, so pip cannot build it), but
`pip download --no-clean` leaves the unpacked sources in its temp dir; we take
`umqtt/simple.py` from there. On a real board use `mpremote mip install umqtt.simple`.

Idempotent: an existing .mplib/umqtt/simple.py is kept unless --force.

    python tools/fetch_mplibs.py [--dest DIR] [--force]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UMQTT_REQ = "micropython-umqtt.simple==1.3.4"


class FetchError(RuntimeError):
    pass


def fetch_umqtt(dest: Path, force: bool = False, python: str = sys.executable) -> Path:
    """Place umqtt/simple.py under dest; return its path. Raises FetchError with a hint."""
    target = dest / "umqtt" / "simple.py"
    if target.exists() and not force:
        return target
    with tempfile.TemporaryDirectory(prefix="vibekit-mplib-") as tmp:
        env = dict(os.environ, TMPDIR=tmp)
        cmd = [python, "-m", "pip", "download", "--no-clean", "--no-deps", "--disable-pip-version-check",
               "-d", os.path.join(tmp, "dl"), UMQTT_REQ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        # pip is expected to fail ("does not appear to be a Python project") after unpacking.
        found = glob.glob(os.path.join(tmp, "pip-download-*", "*", "umqtt", "simple.py"))
        if not found:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise FetchError(
                f"could not fetch {UMQTT_REQ} from PyPI (is the network or a PyPI mirror reachable?)\n  "
                + "\n  ".join(tail)
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], target)
        (target.parent / "__init__.py").touch()
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=REPO / ".mplib")
    ap.add_argument("--force", action="store_true", help="fetch again even if present")
    args = ap.parse_args(argv)
    try:
        path = fetch_umqtt(args.dest, args.force)
    except FetchError as e:
        print(f"fetch_mplibs: {e}", file=sys.stderr)
        return 1
    print(f"umqtt.simple: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
