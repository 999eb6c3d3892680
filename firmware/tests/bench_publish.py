# VM side of tools/bench_mqtt_publish.py (not a test module): QoS 1 publishes of batches through MqttUplink.
import sys, time
from vibenode import codec_tools as codec
from vibenode.status import Health
from vibenode.uplink_mqtt import MqttUplink
port = int(sys.argv[1]); per = int(sys.argv[2]); nodelay = sys.argv[3] == "1"
cfg = {"node_id": "b1", "mqtt": {"host": "127.0.0.1", "port": port, "prefix": "bench", "client_id": "b1",
       "user": None, "password": None, "keepalive_s": 30, "timeout_s": 5, "tls": None,
       "backoff_min_s": 0.1, "backoff_max_s": 1}}
import vibenode.uplink_mqtt as um
if not nodelay:
    um._TCP_NODELAY = 0x7fff  # an unknown option: setsockopt fails, counted, NODELAY stays off
h = Health(lambda m: None)
up = MqttUplink(cfg, h, 1, "bench", "0.1.0")
while not up.service():
    time.sleep_ms(50)
rec = codec.encode_record(1, 1, 0, 0, 1, 0, [1.0] * 41)
bb = codec.BatchBuilder("b1", 16384)
seq = 1
t0 = time.ticks_ms(); msgs = 0
while time.ticks_diff(time.ticks_ms(), t0) < 2000:
    bb.begin()
    for i in range(per):
        r = bytearray(rec); r[0] = seq & 255; r[1] = (seq >> 8) & 255; r[2] = (seq >> 16) & 255
        bb.add(r); seq += 1
    assert up.send(bb.finish())
    msgs += 1
dt = time.ticks_diff(time.ticks_ms(), t0) / 1000
print("records/batch %d nodelay %s: %.0f msg/s, %.0f records/s" % (per, nodelay, msgs / dt, msgs * per / dt))
