"""Link benchmark: the node's uplinks next to a raw ceiling measured in the same run.

    .venv/bin/python bench/bench_links.py [--seconds 2] [--out bench/results/links.json]

MQTT (mosquitto on loopback, QoS 1, one publish in flight, each waits for its PUBACK, the
same batch payloads of 179-byte measurement records):
- node: the firmware's MqttUplink (umqtt.simple) on the MicroPython VM
  (firmware/tests/bench_publish.py, as tools/bench_mqtt_publish.py runs it);
- node_cp: the CircuitPython uplink (adafruit_minimqtt) on CPython, socket_pool=socket;
- ceiling: a raw socket writing the same PUBLISH packets pre-encoded in one sendall and
  reading each PUBACK (the lockstep floor of broker + loopback), paho-mqtt the same way
  (publish, wait_for_publish) beside it for reference.
Cases: 1 record per batch without TCP_NODELAY (Nagle + delayed ACK), then 1, 20 and 64
(the default batch.max_records) with it.

Serial (a pty pair, pyserial on the bridge side as host_bridge/inputs/serial.py reads it):
- node: SerialUplink + StdioStream on the VM writing BATCH frames to its stdout (the pty),
  the bridge's FrameDecoder on the other end counting frames;
- ceiling: CPython writing the very same frame bytes to the pty and reading them raw.
Ratios are node / ceiling. Single runs on a shared 2-core machine: sizes, not promises.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
import serial  # noqa: E402

from host_bridge import codec  # noqa: E402
from tests.brokers import make_broker  # noqa: E402
from tests.mpvm import micropython_exe, mp_env  # noqa: E402

RECORD_VALUES = 41
MQTT_CASES = [(1, False), (1, True), (20, True), (64, True)]  # (records per batch, TCP_NODELAY)
SERIAL_CASES = [1, 20]  # records per frame


def _record(seq: int) -> bytes:
    return codec.encode_record(seq, 1, 0, 0, 1, 0, [1.0] * RECORD_VALUES)


def _batches(per: int, count: int) -> list[bytes]:
    out, seq = [], 1
    for _ in range(count):
        out.append(codec.encode_batch("b1", [_record(s) for s in range(seq, seq + per)]))
        seq += per
    return out


# -- MQTT -----------------------------------------------------------------------------------


def mqtt_node_vm(port: int, per: int, nodelay: bool, home: str) -> float:
    p = subprocess.run([micropython_exe(), "-X", "heapsize=192K", str(REPO / "firmware/tests/bench_publish.py"),
                        str(port), str(per), "1" if nodelay else "0"],
                       env=mp_env(home=home), capture_output=True, text=True, timeout=60)
    line = p.stdout.strip()
    if "msg/s" not in line:
        raise RuntimeError(f"bench_publish failed: {p.stdout[-300:]} {p.stderr[-600:]}")
    return float(line.split(":")[1].split("msg/s")[0])


_CP_SCRIPT = r"""
import sys, time
from tests import circuitpython_fakes
circuitpython_fakes.install()
from ports import circuitpython
circuitpython.install_compat()
from vibenode import codec_tools as codec
from vibenode.status import Health
import vibenode.uplink_minimqtt as um
port, per, nodelay, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4])
if not nodelay:
    um._TCP_NODELAY = 0x7fff  # an unknown option: setsockopt fails, counted, NODELAY stays off
cfg = {"node_id": "b1", "mqtt": {"host": "127.0.0.1", "port": port, "prefix": "bench", "client_id": "bcp",
       "user": None, "password": None, "keepalive_s": 30, "timeout_s": 5, "tls": None,
       "backoff_min_s": 0.1, "backoff_max_s": 1}}
up = um.MqttUplink(cfg, Health(lambda m: None), 1, "bench", "0.1.0")
while not up.service():
    time.sleep(0.05)
rec = codec.encode_record(1, 1, 0, 0, 1, 0, [1.0] * 41)
bb = codec.BatchBuilder("b1", 16384)
seq = 1; msgs = 0; t0 = time.monotonic()
while time.monotonic() - t0 < seconds:
    bb.begin()
    for i in range(per):
        r = bytearray(rec); r[0] = seq & 255; r[1] = (seq >> 8) & 255; r[2] = (seq >> 16) & 255
        bb.add(r); seq += 1
    assert up.send(bb.finish())
    msgs += 1
print("%.1f" % (msgs / (time.monotonic() - t0)))
"""


def mqtt_node_cp(port: int, per: int, nodelay: bool, seconds: float) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "firmware"), str(REPO)]))
    p = subprocess.run([sys.executable, "-c", _CP_SCRIPT, str(port), str(per), "1" if nodelay else "0",
                        str(seconds)], env=env, cwd=str(REPO), capture_output=True, text=True, timeout=60)
    try:
        return float(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"minimqtt bench failed: {p.stdout[-300:]} {p.stderr[-800:]}") from None


def mqtt_paho(port: int, per: int, nodelay: bool, seconds: float) -> float:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ceiling-{per}-{nodelay}")
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        import socket

        sock = c.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)  # paho sets it on
        payloads = _batches(per, 64)
        msgs, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            c.publish("bench/b1/data", payloads[msgs % len(payloads)], qos=1).wait_for_publish(10)
            msgs += 1
        return msgs / (time.monotonic() - t0)
    finally:
        c.loop_stop()
        c.disconnect()


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _mqtt_packet(first: int, body: bytes) -> bytes:
    n, rl = len(body), bytearray()
    while True:
        d, n = n & 0x7F, n >> 7
        rl.append(d | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(rl) + body


def mqtt_raw(port: int, per: int, nodelay: bool, seconds: float) -> float:
    """The lockstep floor of the broker + loopback: pre-encoded PUBLISH, sendall, read PUBACK."""
    import socket

    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if nodelay else 0)
    s.sendall(_mqtt_packet(0x10, _mqtt_str("MQTT") + b"\x04\x02\x00\x1e" + _mqtt_str(f"raw-{per}-{nodelay}")))
    assert s.recv(4)[:1] == b"\x20"
    payloads = _batches(per, 64)
    topic = _mqtt_str("bench/b1/data")
    msgs, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        pid = (msgs % 65000) + 1
        s.sendall(_mqtt_packet(0x32, topic + pid.to_bytes(2, "big") + payloads[msgs % len(payloads)]))
        ack = b""
        while len(ack) < 4:
            ack += s.recv(4 - len(ack))
        msgs += 1
    dt = time.monotonic() - t0
    s.close()
    return msgs / dt


def bench_mqtt(seconds: float, tmp: str) -> list[dict]:
    b = make_broker(Path(tmp) / "broker").start()
    rows = []
    try:
        for per, nodelay in MQTT_CASES:
            vm = mqtt_node_vm(b.port, per, nodelay, tmp)
            cp = mqtt_node_cp(b.port, per, nodelay, seconds)
            paho = mqtt_paho(b.port, per, nodelay, seconds)
            ceiling = mqtt_raw(b.port, per, nodelay, seconds)
            rows.append({
                "records_per_batch": per, "tcp_nodelay": nodelay,
                "node_vm_msg_s": round(vm, 1), "node_vm_records_s": round(vm * per),
                "node_cp_msg_s": round(cp, 1), "node_cp_records_s": round(cp * per),
                "ceiling_raw_msg_s": round(ceiling, 1), "ceiling_raw_records_s": round(ceiling * per),
                "paho_msg_s": round(paho, 1),
                "ratio_vm": round(vm / ceiling, 3), "ratio_cp": round(cp / ceiling, 3),
                "ratio_paho": round(paho / ceiling, 3),
            })
            print(rows[-1], flush=True)
    finally:
        b.stop()
    return rows


# -- serial ---------------------------------------------------------------------------------

_VM_SERIAL = """
import sys, time
from ports.stdio import StdioStream
from vibenode import codec_tools as codec
from vibenode.status import Health
from vibenode.uplink_serial import SerialUplink
N = %d; PER = %d
cfg = {"node_id": "b1", "serial": {"hello_interval_s": 1000, "write_timeout_s": 5}}
up = SerialUplink(cfg, Health(lambda m: None), StdioStream(), 1, "bench", "0.1.0")
up.greeted = True  # no HELLO: frames only
rec = codec.encode_record(1, 1, 0, 0, 1, 0, [1.0] * 41)
bb = codec.BatchBuilder("b1", 16384)
seq = 1
t0 = time.ticks_ms()
for i in range(N):
    bb.begin()
    for k in range(PER):
        r = bytearray(rec); r[0] = seq & 255; r[1] = (seq >> 8) & 255; r[2] = (seq >> 16) & 255
        bb.add(r); seq += 1
    if not up.send(bb.finish()):
        sys.stderr.write("write timeout\\n")
sys.stderr.write("%%d\\n" %% time.ticks_diff(time.ticks_ms(), t0))
"""


def _reader(path: str, n_frames: int, decode: bool, result: dict) -> None:
    """Read the pty like host_bridge/inputs/serial.py: read(in_waiting), feed the decoder."""
    ser = serial.Serial(path, 115200, timeout=0.05)
    dec = codec.FrameDecoder()
    got_bytes = 0
    t_first = None
    result["ready"].set()
    deadline = time.monotonic() + 120
    target = result["bytes"]
    while time.monotonic() < deadline:
        data = ser.read(ser.in_waiting or 1)
        if not data:
            continue
        if t_first is None:
            t_first = time.monotonic()
        got_bytes += len(data)
        if decode:
            dec.feed(data)
            if dec.frames >= n_frames:
                break
        elif got_bytes >= target:
            break
    result["t"] = time.monotonic() - (t_first or time.monotonic())
    result["frames"] = dec.frames if decode else got_bytes // (target // n_frames)
    result["garbage"] = dec.garbage_bytes
    ser.close()


def serial_case(per: int, seconds: float, tmp: str) -> dict:
    frame = codec.encode_frame(codec.FRAME_BATCH, _batches(per, 1)[0])
    # size N so the node run takes about `seconds` (first guess at ~1.5k frames/s of 1 record)
    n = max(200, int(seconds * 1500 / per))
    # node (VM) -> pty -> pyserial + FrameDecoder
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    path = os.ttyname(s)
    res: dict = {"ready": threading.Event(), "bytes": n * len(frame)}
    th = threading.Thread(target=_reader, args=(path, n, True, res), daemon=True)
    th.start()
    res["ready"].wait(5)
    p = subprocess.run([micropython_exe(), "-X", "heapsize=192K", "-c", _VM_SERIAL % (n, per)],
                       stdin=subprocess.DEVNULL, stdout=m, stderr=subprocess.PIPE, env=mp_env(home=tmp),
                       text=True, timeout=120)
    th.join(60)
    os.close(m)
    os.close(s)
    if res.get("frames") != n:
        raise RuntimeError(f"serial node bench: {res.get('frames')} of {n} frames; {p.stderr[-500:]}")
    node_fps = n / max(res["t"], 1e-6)
    # ceiling: the same bytes written by CPython to the pty master, read raw on the slave
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    path = os.ttyname(s)
    raw: dict = {"ready": threading.Event(), "bytes": n * len(frame)}
    th = threading.Thread(target=_reader, args=(path, n, False, raw), daemon=True)
    th.start()
    raw["ready"].wait(5)
    blob = frame * n
    mv = memoryview(blob)
    while mv:
        w = os.write(m, mv[:4096])
        mv = mv[w:]
    th.join(60)
    os.close(m)
    os.close(s)
    raw_fps = n / max(raw["t"], 1e-6)
    return {
        "records_per_frame": per, "frame_bytes": len(frame), "frames": n,
        "node_vm_frames_s": round(node_fps), "node_vm_records_s": round(node_fps * per),
        "node_vm_kbytes_s": round(node_fps * len(frame) / 1000, 1),
        "ceiling_raw_pty_frames_s": round(raw_fps), "ceiling_raw_pty_kbytes_s": round(raw_fps * len(frame) / 1000, 1),
        "ratio": round(node_fps / raw_fps, 3), "garbage_bytes": res["garbage"],
    }


def bench_serial(seconds: float, tmp: str) -> list[dict]:
    rows = []
    for per in SERIAL_CASES:
        rows.append(serial_case(per, seconds, tmp))
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "links.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        mq = bench_mqtt(args.seconds, tmp)
        se = bench_serial(args.seconds, tmp)
    from importlib.metadata import version

    import adafruit_minimqtt  # noqa: F401 - version for the record

    out = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {"paho-mqtt": version("paho-mqtt"), "adafruit-circuitpython-minimqtt":
                     version("adafruit-circuitpython-minimqtt"), "pyserial": version("pyserial")},
        "record_bytes": 15 + 4 * RECORD_VALUES,
        "mqtt_qos1": mq,
        "serial_pty": se,
        "notes": "MQTT: one QoS 1 publish in flight, each waits for PUBACK, mosquitto on loopback; "
                 "ceiling = raw socket lockstep with pre-encoded packets (paho lockstep for reference). Serial: VM SerialUplink/StdioStream -> pty -> pyserial "
                 "read(in_waiting) -> host_bridge FrameDecoder; ceiling = CPython writing the same bytes "
                 "to the pty, read raw. Single runs on a shared 2-core machine.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
