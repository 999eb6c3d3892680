# The node loop: window capture -> features -> temperature -> record -> journal; between
# windows (never during one) the uplink is serviced: one batch in flight, resent on ack
# timeout, records freed on ack, time synced from acks, a status record now and then.
#
# Parts are injected (tests use stand-ins); build() wires the real ones from a port, a
# board dict and a validated config.
import gc
import sys
import time
from array import array

from micropython import const

from vibenode import codec
from vibenode.clock import Clock
from vibenode.status import FW_VERSION, Health, fill_status, new_status_values

try:  # record values copied as float32 bytes: no boxed float per value (viper; not on CircuitPython)
    from vibenode.kernels import copy_bytes as _copy
except Exception:
    _copy = None

_NAN = float("nan")
# Record kinds and flags (docs/protocol.md; public names in vibenode.codec_tools)
_KIND_MEASUREMENT = const(0)
_KIND_STATUS = const(1)
_CLOCK_SYNCED = const(0x01)
_HISTORICAL = const(0x02)
_ACCEL_FAULT = const(0x04)
_TEMP_FAULT = const(0x08)
_FIFO_OVERRUN = const(0x10)
_CLIPPED = const(0x20)
# Flags bit 6 (docs/protocol.md): a live record sent ahead of the backlog. The same record is
# sent again, in order, with the backfill; the bridge shows it at once and answers with its
# in-order frontier, so a preview never frees anything in the journal.
_PREVIEW = const(0x40)


class Node:
    def __init__(self, cfg, journal, acq, fx, temp, uplink, port, clock=None, health=None, log=print,
                 batch_buf=None):
        self.net_cfg = {"wifi": cfg.get("wifi")}  # what the ports' network calls read
        self.journal = journal
        self.acq = acq
        self.fx = fx
        self.temp = temp
        self.port = port
        self.log = log
        self.clock = clock or Clock()
        self.health = health or Health(log)
        b = cfg["batch"]
        self.max_records = b["max_records"]
        self.ack_timeout_ms = int(b["ack_timeout_s"] * 1000)
        self.interval_ms = int(cfg["window"]["interval_s"] * 1000)
        self.status_ms = int(cfg["status_interval_s"] * 1000)
        # batch_buf: build() lends the sample buffers (a batch lives between windows only)
        self.builder = codec.BatchBuilder(cfg["node_id"], b["max_bytes"], batch_buf)
        nvalues = fx.nvalues if fx is not None else 1
        self.values = array("f", [0.0] * nvalues)
        self.status_values = new_status_values()
        n = max(codec.record_size(len(self.values)), codec.record_size(len(self.status_values)))
        self.recbuf = bytearray(n)
        self.recmv = memoryview(self.recbuf)
        # in flight: (first seq, last seq, count) of the batch sent last; None when idle
        self.inflight = None
        self.sent_at = 0
        self.acked_seq = 0
        # Highest seq sent in order (this boot) or confirmed before it: an ack never frees more.
        self.sent_hi = journal.acked
        self.live_from = 1  # records with seq >= live_from are live, older are backlog
        self.batches_sent = 0
        self.resends = 0
        self.acks = 0
        self._next_status = None  # first status right after the first window
        # Backfill rate limit: a token bucket in records, refilled at backfill_rps, one batch deep.
        self.backfill_rps = b.get("backfill_rps", 0)
        self._tokens = self.max_records
        self._tokens_at = time.ticks_ms()
        self.previewed = 0  # highest seq sent as a preview
        self.previews = 0
        self.converted = 0  # unsynced same-boot records sent with a converted (Unix) time
        # Flush policy: short while the link is up (acks usually free records while they are
        # still staged, so flash sees nothing), whole blocks while it is down and while a
        # backlog deeper than a block drains (see _set_offline). `offline`: whole blocks now.
        jc = cfg.get("journal") or {}
        self._flush_up = (jc.get("flush_records", journal.flush_records), jc.get("flush_ms", journal.flush_ms))
        self._flush_down = (jc.get("offline_flush_records", self._flush_up[0]), jc.get("offline_flush_ms", self._flush_up[1]))
        self.offline = False
        self.set_uplink(uplink)

    def set_uplink(self, uplink):
        """The uplink whose acks this node takes (build() attaches it after the node is built)."""
        self.uplink = uplink
        if uplink is not None:
            uplink.on_ack = self._on_ack

    # -- records ---------------------------------------------------------------------------

    def _append(self, kind, flags, values, ts=None):
        """Encode one record (stamped now, or with ts = clock.stamp() taken earlier) into the
        journal; False (and counted) if the journal refused it."""
        ts_s, ts_ms, synced = ts or self.clock.stamp()
        if synced:
            flags |= _CLOCK_SYNCED
        j = self.journal
        n = codec.encode_record_into(self.recbuf, j.next_seq, j.boot, kind, flags, ts_s, ts_ms, values, -1, _copy)
        try:
            j.append(self.recmv[:n])
        except Exception as e:
            self.health.error("journal_append", e)
            return False
        return True

    def window(self):
        """One measurement window -> one kind-0 record in the journal. Returns True if stored."""
        h = self.health
        flags = 0
        vals = self.values
        self.live_from = self.journal.next_seq
        ts = self.clock.stamp()  # the record is stamped at the window's start
        try:
            f = self.acq.capture()
            flags |= f & (_FIFO_OVERRUN | _CLIPPED)
            if f & _FIFO_OVERRUN:
                h.count("overrun_windows")
            self.fx.compute(self.acq.x, self.acq.y, self.acq.z, self.acq.scale_g, vals)
            h.sensor_faults &= ~1
        except Exception as e:
            h.error("accel", e)
            h.sensor_faults |= 1
            flags |= _ACCEL_FAULT
            for i in range(1, len(vals)):
                vals[i] = _NAN
        accel = getattr(self.acq, "accel", None)
        if accel is not None:
            h.fifo_overruns = getattr(accel, "overruns", h.fifo_overruns)
        if self.temp is None:
            vals[0] = _NAN
        else:
            try:
                vals[0] = self.temp.read_c()
                h.sensor_faults &= ~2
            except Exception as e:
                h.error("temp", e)
                h.sensor_faults |= 2
                flags |= _TEMP_FAULT
                vals[0] = _NAN
        h.windows += 1
        return self._append(_KIND_MEASUREMENT, flags, vals, ts)

    def status(self):
        v = fill_status(
            self.status_values,
            self.clock.uptime_ms() / 1000,
            self.health,
            self.journal,
            self.uplink.reconnects,
            self.port.reset_cause(),
            self.port.rssi(),
        )
        return self._append(_KIND_STATUS, 0, v)

    # -- uplink ----------------------------------------------------------------------------

    def _set_offline(self, offline):
        """Whole-block flushes (the offline policy) while the link is down, and while acks
        arrive but more than a block's worth of records (offline flush size) is unacked: the
        in-order stream reaches RAM only after that backlog, so short flushes would write
        anyway, a few records per block. Short again once fewer than the short flush size are
        unacked (staged records then go out next and are acked while staged: never written)."""
        if not offline:
            d = self.journal.depth
            offline = d > self._flush_down[0] or (self.offline and d >= self._flush_up[0])
        if offline == self.offline:
            return
        self.offline = offline
        fr, fm = self._flush_down if offline else self._flush_up
        try:
            self.journal.set_flush(fr, fm)
        except Exception as e:
            self.health.error("journal_policy", e)

    def _on_ack(self, seq, time_ms, next_seq=0, frontier=False):
        self.acks += 1
        if self.offline:
            self._set_offline(False)  # link back: short flushes unless a deep backlog drains
        if time_ms is not None:
            self.clock.sync(time_ms)
        j = self.journal
        if next_seq:
            # RESYNC (docs/protocol.md 3.1): the bridge holds other records under the seqs this
            # node sent (its flash was wiped, its journal state lost) and stored nothing of that
            # batch. Number on from next_seq: the oldest unacked record goes out as next_seq.
            # Journaled records keep their seq; the wire seq is seq + offset (persisted).
            d = next_seq - j.acked - 1
            if d > j.offset:  # only ever forward: a late or repeated RESYNC changes nothing
                self.health.error("seq_reset", next_seq)
                try:
                    j.set_offset(d)
                except Exception as e:
                    self.health.error("journal_ack", e)
                    return
            self.inflight = None  # send again at once, renumbered
            self.sent_hi = j.acked
            self.acked_seq = 0  # no previews until the new numbering is acked
            return
        seq -= j.offset  # wire -> journal seq; an ack from before a RESYNC lands <= acked
        if seq >= j.next_seq:
            # The bridge holds more than this node ever numbered (its flash was wiped): free
            # nothing; the first batch the bridge refuses brings the RESYNC.
            self.health.error("ack_ahead", seq)
            seq = 0
        elif seq > self.sent_hi:
            # The bridge claims records this node has not sent in order yet (after a reboot its
            # frontier may legitimately be ahead: they are resent and deduplicated). Never free
            # what the bridge may not hold.
            if self.acks == 1:
                self.health.count("ack_ahead_at_boot")  # records sent before a reboot
            else:
                self.health.error("ack_beyond_sent", seq)
            seq = self.sent_hi
        if frontier:
            # The answer to a HELLO, a time request or previews: the bridge's in-order frontier,
            # information only. After a wipe it names other records: it never frees anything.
            if self.inflight is not None and not self.inflight[2]:
                self.inflight = None  # the time request is answered
            return
        if seq > self.acked_seq or seq >= 1:
            try:
                j.ack(seq)
            except Exception as e:
                self.health.error("journal_ack", e)
        self._set_offline(False)  # the backlog left after this ack sets the flush policy
        if seq > self.acked_seq:
            self.acked_seq = seq
        if self.inflight is not None and seq >= self.inflight[1]:
            self.inflight = None

    def _add(self, r, flags):
        """Add one record to the batch being built; a same-boot record stamped before the clock
        was synced gets its Unix time now (offset + its seconds since boot) and CLOCK_SYNCED."""
        b = self.builder
        off = b.len
        if not b.add(r, flags):
            return False
        buf = b.buf
        d = self.journal.offset
        if d:  # on the wire: journal seq + offset (RESYNC)
            d += buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | (buf[off + 3] << 24)
            buf[off] = d & 0xFF
            buf[off + 1] = (d >> 8) & 0xFF
            buf[off + 2] = (d >> 16) & 0xFF
            buf[off + 3] = (d >> 24) & 0xFF
        clk = self.clock
        if clk.synced and not buf[off + 7] & _CLOCK_SYNCED and (buf[off + 4] | (buf[off + 5] << 8)) == self.journal.boot:
            up = (buf[off + 8] | (buf[off + 9] << 8) | (buf[off + 10] << 16) | (buf[off + 11] << 24)) * 1000
            up += buf[off + 12] | (buf[off + 13] << 8)
            t = clk.unix_ms_at(up)
            s_ = t // 1000
            ms = t % 1000
            buf[off + 8] = s_ & 0xFF
            buf[off + 9] = (s_ >> 8) & 0xFF
            buf[off + 10] = (s_ >> 16) & 0xFF
            buf[off + 11] = (s_ >> 24) & 0xFF
            buf[off + 12] = ms & 0xFF
            buf[off + 13] = ms >> 8
            buf[off + 7] |= _CLOCK_SYNCED
            self.converted += 1
        return True

    def _backfill_budget(self):
        """Records the rate limit allows in the next backlog batch (0: wait)."""
        if not self.backfill_rps:
            return self.max_records
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._tokens_at)
        self._tokens_at = now
        t = self._tokens + dt * self.backfill_rps / 1000
        if t > self.max_records:
            t = self.max_records
        self._tokens = t
        return int(t)

    def _send(self, resend):
        j = self.journal
        if not self.clock.synced and not self.acks:
            # Ask for the time first: an empty batch, answered like any batch (frontier + the
            # bridge's time). Records of this boot then go out with Unix time, not uptime.
            # Over serial the HELLO is that question already: wait for its answer.
            if getattr(self.uplink, "greeted", None) is False:
                return
            b = self.builder
            b.begin()
            self.inflight = (0, 0, 0)
            self.sent_at = time.ticks_ms()
            if not self.uplink.send(b.finish()):
                self.sent_at = time.ticks_add(self.sent_at, -self.ack_timeout_ms)
            return
        limit = self.max_records
        if resend:
            limit = self.inflight[2]
        elif self.backfill_rps and j.acked + 1 < self.live_from:
            # A backlog: rate-limited (live records still go out at once as previews), and in
            # full batches: wait until the bucket holds a whole batch (or the whole backlog).
            limit = self._backfill_budget()
            backlog = self.live_from - j.acked - 1
            if limit < (backlog if backlog < self.max_records else self.max_records):
                return
        b = self.builder
        b.begin()
        # Records go from the journal into the batch one at a time (no list of copies: the
        # batch is the only place they all are at once); the batch's room bounds the bytes.
        hist = 0
        first = 0  # length of the oldest unacked record; 0: none
        it = j.iter_records()
        for r in it:
            seq = codec.record_seq(r)
            if not first:
                first = len(r)
                if resend and seq > self.inflight[1]:
                    resend = False  # the quota dropped the records in flight while the link was down
            if resend and seq > self.inflight[1]:
                break
            old = seq < self.live_from
            if not self._add(r, _HISTORICAL if old else 0):
                break
            if old:
                hist += 1
            if b.count >= limit:
                break
        it.close()  # closes the segment file the generator may hold open
        if not first:
            self.inflight = None
            return
        if not b.count:
            self.health.error("batch_empty", first)
            return
        if hist and self.backfill_rps and not resend:
            self._tokens -= hist
        self.inflight = (b.first_seq, b.last_seq, b.count)
        if b.last_seq > self.sent_hi:
            self.sent_hi = b.last_seq
        self.sent_at = time.ticks_ms()
        if resend:
            self.resends += 1
        if self.uplink.send(b.finish()):
            self.batches_sent += 1
        else:
            # link failed mid-send; resend (same records) as soon as it is back
            self.sent_at = time.ticks_add(self.sent_at, -self.ack_timeout_ms)

    def _preview(self):
        """Send the live records the in-order stream has not reached yet, marked PREVIEW.

        During a long backfill the bridge gets the newest values at once; each record is sent
        again, in order, later (the bridge stores it once). Nothing here waits for an ack.
        """
        top = self.journal.next_seq - 1
        lo = self.live_from
        sent_hi = self.inflight[1] if self.inflight is not None else self.journal.acked
        if lo <= sent_hi:
            lo = sent_hi + 1
        if lo <= self.previewed:
            lo = self.previewed + 1
        if lo > top:
            return
        b = self.builder
        b.begin()
        it = self.journal.iter_records(lo)
        for r in it:
            if not self._add(r, _PREVIEW):
                break
        it.close()
        if not b.count:
            return
        self.previewed = b.last_seq
        self.previews += 1
        self.uplink.send(b.finish())

    def service(self, deadline_ms):
        """Between windows: housekeeping, then the uplink until deadline_ms (ticks)."""
        gc.collect()
        try:
            self.journal.poll()
        except Exception as e:
            self.health.error("journal_poll", e)
        now = time.ticks_ms()
        if self.status_ms and (self._next_status is None or time.ticks_diff(now, self._next_status) >= 0):
            self._next_status = time.ticks_add(now, self.status_ms)
            self.status()
        up = self.uplink
        if not up.connected:
            try:
                self.port.network_check(self.net_cfg)  # WiFi reconnect on boards, bounded
            except Exception as e:
                self.health.error("network", e)
        while True:
            try:
                connected = up.service()
            except Exception as e:
                self.health.error("uplink_service", e)
                connected = False
            if connected:
                now = time.ticks_ms()
                if self.inflight is not None:
                    if time.ticks_diff(now, self.sent_at) >= self.ack_timeout_ms:
                        self.health.count("ack_timeouts")
                        self._set_offline(True)
                        self._send(True)
                elif self.journal.depth > 0:
                    self._send(False)
                # Live keeps flowing during a backfill: the newest records the in-order stream
                # has not reached go out at once as a preview (once per record). Not when the
                # only thing ahead of them is the batch in flight: its ack is one round trip.
                sent_hi = self.inflight[1] if self.inflight is not None else self.journal.acked
                # Not before this boot's numbering is confirmed by an in-order ack (acked_seq): a
                # preview stored under seqs the bridge then RESYNCs would be stored twice.
                if self.live_from > self.previewed and self.live_from > sent_hi + 1 and self.clock.synced and self.acked_seq:
                    try:
                        self._preview()
                    except Exception as e:
                        self.health.error("preview", e)
            else:
                self._set_offline(True)
            remaining = time.ticks_diff(deadline_ms, time.ticks_ms())
            if remaining <= 0:
                up.wait(0)
                break
            try:
                up.wait(remaining if remaining < 50 else 50)
            except Exception as e:
                self.health.error("uplink_wait", e)
        self.port.progress()

    def run(self, windows=-1):
        """The main loop; windows < 0 runs forever."""
        start = time.ticks_ms()
        done = 0
        while windows < 0 or done < windows:
            self.window()
            done += 1
            if self.interval_ms:
                start = time.ticks_add(start, self.interval_ms)
                if time.ticks_diff(start, time.ticks_ms()) < 0:  # fell behind: no catch-up burst
                    self.health.count("late_windows")
                    start = time.ticks_ms()
            else:
                start = time.ticks_ms()
            self.service(start)


def _built(drop_boot, *modules):
    """build(): with drop_boot, free the boot-only code of the modules of a part just built."""
    if drop_boot:
        for name in modules:
            mod = sys.modules.get(name)
            if mod is not None:
                drop_boot_code(mod)
        gc.collect()


def _build_node(port, board, cfg, log, drop_boot):
    """build()'s first half: sensors, acquisition, features, flash + journal and the node
    without its uplink. Returns (node, board name)."""
    from vibenode.acquisition import Acquisition

    w = cfg["window"]
    n = w["n"]
    odr = w["odr_hz"]
    samples = Acquisition.new_samples(n)  # the biggest buffer (6n + 12 bytes) before the rest
    from vibenode.features import FeatureExtractor
    from vibenode.sensors import make_accel, make_temp, sensor_specs

    if board is None:
        board = port.load_board()
    specs = sensor_specs(board)
    accel = make_accel(specs["accel"], port)
    acq = Acquisition(accel, n, odr, w["range_g"], samples)
    del samples
    _built(drop_boot, type(accel).__module__, "vibenode.acquisition")
    f = cfg["features"]
    fx = FeatureExtractor(
        n,
        odr,
        bands=tuple(tuple(b) for b in f["bands"]),
        vel_band=tuple(f["vel_band"]),
        hf_edge_hz=f["hf_edge_hz"],
        iso_limits=tuple(f["iso_limits"]),
        in_place=True,  # the FFT runs in the sample buffers
    )
    _built(drop_boot, "vibenode.features")
    # Batches are built between windows, when the samples are dead: in the sample buffer too,
    # through a byte view of it (uctypes; a port without it gets a batch buffer of its own).
    batch_buf = None
    try:
        import uctypes

        nb = 2 * len(acq.samples)
        if cfg["batch"]["max_bytes"] <= nb:
            batch_buf = uctypes.bytearray_at(uctypes.addressof(acq.samples), nb)
    except ImportError:
        pass
    health = Health(log)
    temp = None
    try:
        temp = make_temp(specs["temp"], port)
    except Exception as e:  # a missing temperature sensor is a fault, not a dead node
        health.error("temp_init", e)
        health.sensor_faults |= 2
    del specs, make_accel, make_temp, sensor_specs
    if drop_boot:
        sys.modules.pop("vibenode.sensors", None)  # the driver tables: boot only
        if hasattr(sys.modules["vibenode"], "sensors"):
            del sys.modules["vibenode"].sensors
        _built(drop_boot, type(accel if temp is None else temp).__module__, "drivers.errors")
    board_name = cfg["board"] or board.get("name", "unknown")
    root = port.mount_flash(board)
    del board
    from vibenode.journal import Journal

    jc = cfg["journal"]
    journal = Journal(
        root + "/journal",
        segment_bytes=jc["segment_bytes"],
        quota_bytes=jc["quota_bytes"],
        flush_records=jc["flush_records"],
        flush_ms=jc["flush_ms"],
        stage_bytes=jc.get("stage_bytes", 2048),
    )
    _built(drop_boot, "vibenode.journal")
    clock = Clock()
    # The node before the uplink's code is loaded: the node's constructors go first.
    node = Node(cfg, journal, acq, fx, temp, None, port, clock, health, log, batch_buf)
    _built(drop_boot, "vibenode.codec", "vibenode.clock", "vibenode.status")
    return node, board_name


def build(port, board, cfg, log=print, drop_boot=False):
    """Wire the real parts: sensors, acquisition, features, flash + journal, uplink.

    board: the board dict, or None to load it here (port.load_board()): a caller's reference
    would keep it alive until build() returns.

    drop_boot (main.py): each part's boot-only code (its module's _BOOT_ONLY) is freed as soon
    as the part is built, the sensor tables once the sensors are, the node's constructor and
    the first half of build() before the uplink's code is loaded: the boot never holds all of
    that code at once, so its heap peak stays close to the running node's."""
    global _build_node
    node, board_name = _build_node(port, board, cfg, log, drop_boot)
    if drop_boot:
        del _build_node
        Node.__init__ = None  # in _BOOT_ONLY too; freed here, before the uplink's code loads
        gc.collect()
    clock = node.clock
    health = node.health
    journal = node.journal
    # The port's last boot calls, then its boot code goes too (the flash driver's included).
    mqtt = cfg["uplink"] == "mqtt"
    if mqtt:
        port.network_up(cfg)
    else:
        stream = port.serial_stream()
    t = port.ntp_time_ms(cfg)
    if t:
        clock.sync(t)
    if hasattr(port, "heap_probe"):
        port.heap_probe(node)  # the virtual board's heap figures (off unless asked for)
    port.watchdog(cfg["watchdog_s"])
    pool = getattr(port, "socket_pool", None)  # CircuitPython: minimqtt on the port's socketpool
    _built(drop_boot, *[m for m in sys.modules if m.startswith("ports")])
    if not mqtt:
        from vibenode.uplink_serial import SerialUplink

        uplink = SerialUplink(cfg, health, stream, journal.boot, board_name, FW_VERSION)
    elif pool is not None:
        from vibenode.uplink_minimqtt import MqttUplink

        uplink = MqttUplink(cfg, health, journal.boot, board_name, FW_VERSION, pool=pool())
    else:
        from vibenode.uplink_mqtt import MqttUplink

        uplink = MqttUplink(cfg, health, journal.boot, board_name, FW_VERSION)
    node.set_uplink(uplink)
    _built(drop_boot, type(uplink).__module__)
    log(
        "vibenode %s node=%s boot=%d next_seq=%d depth=%d uplink=%s board=%s"
        % (FW_VERSION, cfg["node_id"], journal.boot, journal.next_seq, journal.depth, cfg["uplink"], board_name)
    )
    return node


def boot(port):
    """main.py's boot: load and check the config (the validator is dropped at once), build the
    node part by part (build(drop_boot=True)), then free what is left of the boot code (this
    function included). ConfigError and BoardError (ValueErrors) and OSError propagate:
    main.py reports them."""
    import vibenode
    from vibenode import config

    try:
        cfg = config.load(port.config_path())
    finally:
        # the validator is big (schema + messages): dropped once the config is checked
        sys.modules.pop("vibenode.config", None)
        if hasattr(vibenode, "config"):  # not set when it was imported ahead (romboot.py)
            del vibenode.config
        del config
        gc.collect()
    node = build(port, None, cfg, port.log, drop_boot=True)
    del cfg
    drop_boot_code()  # what is left: build(), boot() and the node's constructor
    gc.collect()
    return node


def drop_boot_code(*modules):
    """Free the code only the boot runs (of the given modules, or of every loaded one):
    constructors, the journal's boot scan, table builders, the port's boot calls, build()
    itself. A module lists its boot-only names in _BOOT_ONLY: "name" (a module global, deleted)
    or ("Class", "method", ...) (methods set to None: MicroPython keeps the value of a deleted
    class attribute alive). Names only, no dotted strings: they are interned already, while a
    longer string constant would stay in the module's constants for good. Only main.py drops
    code (through build() and once the node is built): nothing constructs a part after that."""
    for mod in modules or list(sys.modules.values()):
        names = getattr(mod, "_BOOT_ONLY", None)
        if names is None:
            continue
        for name in names:
            if isinstance(name, tuple):
                cls = getattr(mod, name[0])
                for attr in name[1:]:
                    setattr(cls, attr, None)
            else:
                delattr(mod, name)
        del mod._BOOT_ONLY


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
# (_build_node: build() deletes it itself, before it loads the uplink's code)
_BOOT_ONLY = ("_built", "build", "boot", "drop_boot_code", ("Node", "__init__", "set_uplink"))
