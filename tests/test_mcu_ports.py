"""firmware/ports/_board.py, esp32.py and rp2.py (the MicroPython MCU ports) on CPython with
fakes of machine, network, esp32, rp2, ntptime, onewire (tests/mcu_fakes.py) and a virtual
ticks clock: WiFi up with the config's credentials and hostname, reconnect with bounded
backoff, RSSI, NTP, the watchdog fed only on progress (RP2040 capped), reset cause, MCU
temperature, buses from boards/esp32-devkitc.json and boards/pico-w.json."""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path

import pytest

from tests import mcu_fakes as fakes

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
CFG = {"wifi": {"ssid": "plant", "password": "pw", "hostname": "vib-7"}, "ntp_host": "ntp.plant"}


def _drop_firmware_modules():
    for name in [n for n in sys.modules if n == "ports" or n.startswith(("ports.", "drivers", "vibenode"))]:
        sys.modules.pop(name, None)


@pytest.fixture(params=["esp32", "rp2"])
def mcu(request, monkeypatch, tmp_path):
    """(port module, fake modules, clock) for one MCU port, fakes in sys.modules for this test only."""
    which = request.param
    mods: dict = {}
    fake = fakes.install(mods, wdt_max_ms=8388 if which == "rp2" else None)
    for k, v in mods.items():
        monkeypatch.setitem(sys.modules, k, v)
    monkeypatch.syspath_prepend(str(FIRMWARE))
    for name in [n for n in sys.modules if n == "ports" or n.startswith(("ports.", "drivers", "vibenode"))]:
        monkeypatch.delitem(sys.modules, name)
    import importlib

    port_mod = importlib.import_module("ports." + which)
    board_mod = sys.modules["ports._board"]
    clock = fakes.Clock()
    monkeypatch.setattr(board_mod, "time", clock)  # the port's time.ticks_* / sleep_ms
    board_json = tmp_path / "board.json"
    real_open = builtins.open
    monkeypatch.setattr(board_mod, "open",
                        lambda p, *a, **k: real_open(board_json if p == "/board.json" else p, *a, **k),
                        raising=False)
    yield port_mod, fake, clock
    _drop_firmware_modules()


def _board(port_mod, tmp_path, name):
    board = json.loads((REPO / "boards" / name).read_text())
    (tmp_path / "board.json").write_text(json.dumps(board))
    p = port_mod.Port()
    assert p.load_board() == board
    return p, board


def test_wifi_up_with_config_credentials_and_rssi(mcu):
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    assert p.rssi() is None  # no WLAN yet: NaN in the status record
    assert p.network_check(CFG) is True  # nothing to reconnect before network_up
    assert p.network_up(CFG) is True
    net = fake["network"]
    (wl,) = net.wlans
    assert wl.iface == net.STA_IF and wl.is_active
    assert wl.connects == [("plant", "pw")]
    assert net.host == "vib-7" and wl.hostname_at_connect == "vib-7"  # set before the join
    assert clock.ms <= 1000  # joined after a few 100 ms polls
    assert p.rssi() == -67
    assert p.network_up(CFG) is True and len(wl.connects) == 1  # already up: no new join
    wl.drop()
    assert p.rssi() is None
    assert p.network_up({"wifi": None}) is False


def test_wifi_up_without_password_or_hostname(mcu):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    assert p.network_up({"wifi": {"ssid": "open"}}) is True
    assert fake["network"].wlans[0].connects == [("open", "")] and fake["network"].host == "mpy"


def test_boot_join_is_bounded_by_its_timeout(mcu):
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    fake["network"].WLAN  # noqa: B018
    orig = fake["network"].WLAN

    def unreachable(iface):
        w = orig(iface)
        w.reachable = False
        return w

    fake["network"].WLAN = unreachable
    assert p.network_up(CFG, timeout_ms=15000) is False
    assert 15000 <= clock.ms <= 15200  # gave up at the timeout, not later


def test_connect_error_is_a_failed_attempt(mcu):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    assert p.network_up(CFG) is True
    wl = fake["network"].wlans[0]
    wl.drop()
    wl.connect_raises = OSError("Wifi Internal Error")
    assert p.network_check(CFG) is False  # not raised into the node's service loop
    wl.connect_raises = None


def test_reconnect_with_bounded_backoff(mcu):
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    assert p.network_up(CFG) is True
    wl = fake["network"].wlans[0]
    assert p.network_check(CFG) is True and p.wifi_reconnects == 0 and wl.disconnects == 0
    wl.drop()
    wl.reachable = False  # the AP is gone
    attempts, blocked, waits = [], [], []
    last_try = None
    for _ in range(400):  # one check per 0.5 s window, ~10 min of AP outage
        t0 = clock.ms
        n = p.wifi_reconnects
        assert p.network_check(CFG) is False
        blocked.append(clock.ms - t0)
        if p.wifi_reconnects > n:
            if last_try is not None:
                waits.append(t0 - last_try)
            last_try = t0
            attempts.append(t0)
        clock.sleep_ms(500)  # the window
    assert max(blocked) <= 5100  # one attempt never blocks longer than its 5 s timeout
    assert sum(1 for b in blocked if b) == len(attempts)  # backing off: the check returns at once
    assert waits == sorted(waits) and max(waits) <= 60000 + 5100 + 500  # grows, then capped at 60 s
    assert waits[-1] >= 60000 and waits[0] <= 1000 + 5100 + 500
    assert 8 <= len(attempts) <= 20  # not one per window
    assert wl.disconnects == len(attempts)
    # the AP comes back: the next attempt (at most ~60 s later) joins, and the backoff resets
    wl.reachable = True
    for _ in range(200):
        if p.network_check(CFG):
            break
        clock.sleep_ms(500)
    assert wl.isconnected() and wl.connects[-1] == ("plant", "pw")
    wl.drop()
    n = p.wifi_reconnects
    assert p.network_check(CFG) is True and p.wifi_reconnects == n + 1  # at once, no stale backoff


def test_rssi_error_is_none(mcu):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    p.network_up(CFG)
    wl = fake["network"].wlans[0]

    def broken(what=None):
        raise ValueError("unknown config param")

    wl.status = broken
    assert p.rssi() is None


@pytest.mark.parametrize("epoch", [1970, 2000])
def test_ntp_sets_the_clock(mcu, epoch):
    port_mod, fake, clock = mcu
    clock.epoch_year = epoch
    p = port_mod.Port()
    ntp = fake["ntptime"]
    assert p.ntp_time_ms({"ntp_host": None}) is None and ntp.calls == 0
    assert p.ntp_time_ms(CFG) == 1_700_000_000 * 1000  # Unix ms whatever the port's epoch
    assert ntp.host == "ntp.plant" and ntp.calls == 1 and p.ntp_failures == 0


def test_ntp_failure_is_counted_not_raised(mcu, capsys):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    fake["ntptime"].fail = OSError(110)  # ETIMEDOUT
    assert p.ntp_time_ms(CFG) is None
    assert p.ntp_time_ms(CFG) is None
    assert p.ntp_failures == 2 and "ntp failed" in capsys.readouterr().out
    fake["ntptime"].fail = None
    assert p.ntp_time_ms(CFG) and p.ntp_failures == 2


def test_watchdog_fed_only_on_progress(mcu):
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    wdt_cls = fake["machine"].WDT
    p.progress()
    p.watchdog(0)
    assert wdt_cls.instances == []  # 0 = off: no WDT, progress is a no-op
    p.watchdog(5)
    (wdt,) = wdt_cls.instances
    assert wdt.timeout == 5000 and wdt.feeds == 0
    # everything that is not progress leaves it alone
    p.network_up(CFG)
    f0 = wdt.feeds  # (the join wait feeds, bounded by its timeout: see the next test)
    p.network_check(CFG)
    p.rssi()
    p.reset_cause()
    p.ntp_time_ms(CFG)
    fake["ntptime"].fail = OSError(110)
    p.ntp_time_ms(CFG)
    assert wdt.feeds == f0
    p.progress()
    assert wdt.feeds == f0 + 1
    p.progress()
    p.progress()
    assert wdt.feeds == f0 + 3


def test_join_wait_feeds_only_within_its_timeout(mcu):
    # network_check runs inside Node.service(), which ends with progress(): the feeds while a
    # join is awaited are bounded by the join timeout and cannot keep a stuck node alive.
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    p.network_up(CFG)
    p.watchdog(8)
    wdt = fake["machine"].WDT.instances[0]
    wl = fake["network"].wlans[0]
    wl.drop()
    wl.reachable = False
    t0 = clock.ms
    assert p.network_check(CFG) is False
    assert wdt.feeds <= (clock.ms - t0) // 100 + 1 and clock.ms - t0 <= 5100
    f = wdt.feeds
    for _ in range(5):  # backing off: no attempt, no feed
        p.network_check(CFG)
    assert wdt.feeds == f


def test_watchdog_timeout_rp2040_capped(mcu):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    p.watchdog(30)
    (wdt,) = fake["machine"].WDT.instances
    if port_mod.Port.name == "rp2":
        assert wdt.timeout == 8388  # the RP2040's maximum; more raises ValueError on the chip
    else:
        assert wdt.timeout == 30000
    p.watchdog(2.5)
    assert fake["machine"].WDT.instances[-1].timeout == 2500


@pytest.mark.parametrize("name,code", list(fakes.RESET_CODES.items()))
def test_reset_cause_uses_machine_codes(mcu, name, code, monkeypatch):
    port_mod, fake, _ = mcu
    machine = fake["machine"]
    machine.cause = getattr(machine, name)
    p = port_mod.Port()
    assert p.reset_cause() == code
    # the same codes the CircuitPython port maps its ResetReason names to
    from ports.circuitpython import RESET_CODES

    cp_names = {"PWRON_RESET": "POWER_ON", "HARD_RESET": "RESET_PIN", "WDT_RESET": "WATCHDOG",
                "DEEPSLEEP_RESET": "DEEP_SLEEP_ALARM", "SOFT_RESET": "SOFTWARE"}
    assert RESET_CODES[cp_names[name]] == code
    machine.cause = 3
    assert p.reset_cause() == code  # read once at boot


def test_fatal_resets_unless_configuration(mcu):
    port_mod, fake, clock = mcu
    p = port_mod.Port()
    with pytest.raises(SystemExit, match="machine.reset"):
        p.fatal("sensor gone")
    assert fake["machine"].resets == 1 and clock.ms == 5000
    with pytest.raises(SystemExit):
        p.fatal("bad config", code=2)
    assert fake["machine"].resets == 1


def test_mcu_temperature(mcu, monkeypatch):
    port_mod, fake, _ = mcu
    p = port_mod.Port()
    if port_mod.Port.name == "esp32":
        assert p.mcu_temp_c() == 41  # esp32.mcu_temperature(): S2/S3/C3, degrees C
        monkeypatch.delattr(fake["esp32"], "mcu_temperature")
        assert p.mcu_temp_c() == pytest.approx(50.0)  # classic ESP32: 122 F
    else:
        for u16 in (14022, 13000, 15000, 0):
            fakes.ADC.u16 = u16
            v = u16 * 3.3 / 65535
            assert p.mcu_temp_c() == pytest.approx(27 - (v - 0.706) / 0.001721)
        fakes.ADC.u16 = 14022  # 0.706 V: 27 C
        assert p.mcu_temp_c() == pytest.approx(27.0, abs=0.1)
    from drivers.mcu_temp import McuTemp

    assert McuTemp(p).read_c() == pytest.approx(p.mcu_temp_c())


def test_esp32_devkitc_buses(mcu, tmp_path):
    port_mod, fake, _ = mcu
    p, board = _board(port_mod, tmp_path, "esp32-devkitc.json")
    i2c = p.bus("i2c0")
    assert isinstance(i2c, fakes.I2C) and (i2c.id, i2c.scl.id, i2c.sda.id, i2c.freq) == (0, 22, 21, 400000)
    dev = p.bus("spi2")
    from drivers.bus import SPIDevice

    assert isinstance(dev, SPIDevice)
    spi, cs = dev.spi, dev.cs
    assert (spi.id, spi.baudrate, spi.polarity, spi.phase) == (2, 5000000, 1, 1)
    assert (spi.sck.id, spi.mosi.id, spi.miso.id) == (18, 23, 19)
    assert isinstance(cs, fakes.Pin) and cs.id == 5 and cs.mode == fakes.Pin.OUT and cs.value() == 1
    ow = p.bus("ow0")
    assert ow.pin.id == 4
    from vibenode.sensors import make_accel, sensor_specs

    accel = make_accel(sensor_specs(board)["accel"], p)  # the ADXL345 on spi2 probes and configures
    adev = accel.dev  # a fresh machine.SPI per bus() call: same peripheral, as on MicroPython
    assert accel.name == "ADXL345" and adev.spi.writes and adev.cs.value() == 1 and 0 in adev.cs.history
    with pytest.raises(ValueError):
        p.bus("nope")


def test_pico_w_buses(mcu, tmp_path):
    port_mod, fake, _ = mcu
    p, board = _board(port_mod, tmp_path, "pico-w.json")
    dev = p.bus("spi0")
    assert (dev.spi.id, dev.spi.sck.id, dev.spi.mosi.id, dev.spi.miso.id) == (0, 18, 19, 16)
    assert dev.cs.id == 17 and dev.cs.value() == 1  # chip select idles high
    i2c = p.bus("i2c0")
    assert (i2c.id, i2c.scl.id, i2c.sda.id, i2c.freq) == (0, 5, 4, 400000)
    adc = p.bus("adc4")
    assert isinstance(adc, fakes.ADC) and adc.channel == 4
    from drivers.errors import SensorError
    from vibenode.sensors import make_accel, make_temp, sensor_specs

    assert make_accel(sensor_specs(board)["accel"], p).name == "ADXL345"
    with pytest.raises(SensorError):  # nothing at 0x18 on the fake I2C: a sensor fault, not a crash
        make_temp(sensor_specs(board)["temp"], p)
    fakes.ADC.u16 = 14022
    temp = make_temp({"driver": "mcu", "bus": "adc4"}, p)  # the wiring's fallback: ADC channel 4
    assert temp.read_c() == pytest.approx(27.0, abs=0.1)
    p.buses["cpu_temp"] = {"kind": "mcu_temp"}
    assert make_temp({"driver": "mcu", "bus": "cpu_temp"}, p).read_c() == pytest.approx(p.mcu_temp_c())
    p.buses["x"] = {"kind": "can"}
    with pytest.raises(ValueError, match="unknown kind"):
        p.bus("x")


def test_bus_before_board_is_an_error(mcu):
    port_mod, _, _ = mcu
    with pytest.raises(ValueError, match="board file"):
        port_mod.Port().bus("i2c0")


def test_flash_and_serial(mcu):
    port_mod, _, _ = mcu
    p = port_mod.Port()
    assert p.mount_flash({"flash": {"mount": ""}}) == "" and p.mount_flash({}) == ""
    assert p.config_path() == "/config.json"


def test_detect_picks_the_mcu_port(mcu, monkeypatch):
    import types

    import ports

    port_mod, _, _ = mcu
    monkeypatch.setattr(sys, "implementation", types.SimpleNamespace(name="micropython"))
    monkeypatch.setattr(sys, "platform", port_mod.Port.name)
    assert ports.detect().name == port_mod.Port.name


def test_fakes_do_not_leak():
    assert "ports" not in sys.modules or not hasattr(sys.modules.get("machine"), "cause")
    for name in ("machine", "network", "esp32", "rp2", "ntptime", "onewire"):
        assert name not in sys.modules or not isinstance(getattr(sys.modules[name], "reset_cause", None),
                                                         type(lambda: 0))
