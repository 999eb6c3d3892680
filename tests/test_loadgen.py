"""The load generator speaks protocol v1 for many nodes; the bridge stores and acks every record."""

from __future__ import annotations

from tests.bridge_harness import BridgeThread, make_config
from tools.loadgen import LoadGen


def test_loadgen_200_nodes_all_acked(tmp_path, broker):
    cfg = make_config(tmp_path, ["lg00000"], mqtt_port=broker.port, accept_unknown_nodes=True)
    with BridgeThread(cfg) as br:
        lg = LoadGen(200, 4, port=broker.port, interval_s=1.0)
        try:
            lg.connect()
            r = lg.run(3.0)
        finally:
            lg.close()
        assert r["records_sent"] >= 400 and r["records_acked"] == r["records_sent"], r
        assert r["unacked_nodes"] == 0 and r["bad_acks"] == 0
        assert br.historian.count() == r["records_sent"]
        assert br.historian.seqs("lg00199")[0] == 1
