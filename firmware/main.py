# Boot entry on every port (unix = the virtual board, esp32, rp2): pick the port, load the
# board and the node config, run the node. Config errors are printed and stop the node.
import gc
import sys

from ports import detect

port = detect()


def _load_config(path):
    # The validator is big (schema + messages): drop it once the config is checked.
    import vibenode
    from vibenode import config

    try:
        return config.load(path)
    finally:
        sys.modules.pop("vibenode.config", None)
        if hasattr(vibenode, "config"):  # not set when it was imported ahead (romboot.py)
            del vibenode.config
        gc.collect()


def _preload(cfg, board):
    # Every module the node will run, before any of its buffers exists.
    import vibenode.acquisition  # noqa: F401
    import vibenode.features  # noqa: F401
    import vibenode.journal  # noqa: F401
    import vibenode.node  # noqa: F401
    from vibenode import sensors

    specs = sensors.sensor_specs(board)
    for role, table in (("accel", sensors.ACCEL_DRIVERS), ("temp", sensors.TEMP_DRIVERS)):
        spec = specs[role]
        entry = table.get(spec["driver"]) if spec else None
        if entry is not None:
            try:
                __import__(entry[0])
            except ImportError:
                pass  # build() reports it
    if cfg["uplink"] == "mqtt":
        import vibenode.uplink_mqtt  # noqa: F401
    else:
        import vibenode.uplink_serial  # noqa: F401
    pre = getattr(port, "preload", None)
    if pre is not None:
        pre(board)


def _reserve(cfg):
    # One block the size of the node's buffers (samples 6n, FFT 4n, batch, journal staging,
    # flash chunks), taken before the code is loaded and freed just before build(): the
    # buffers then find one contiguous hole instead of the gaps between code objects.
    # Below ~150K the 64-bit VM otherwise fails the boot on a 4 KB buffer (fragmentation).
    n = cfg["window"]["n"]
    try:
        return bytearray(10 * n + cfg["batch"]["max_bytes"] + cfg["journal"].get("stage_bytes", 2048) + 2048)
    except MemoryError:
        return None


def _drop_boot_code():
    # Code that only wires the node (sensor tables, build()) and the board dict: on the 64-bit
    # VM every function costs ~100 bytes besides its bytecode, so what boot alone needs goes.
    import vibenode
    from vibenode import node as nodemod

    sys.modules.pop("vibenode.sensors", None)
    if hasattr(vibenode, "sensors"):
        del vibenode.sensors
    if hasattr(nodemod, "build"):
        del nodemod.build
    gc.collect()


try:
    cfg = _load_config(port.config_path())
    hole = _reserve(cfg)
    board = port.load_board()
    _preload(cfg, board)
    from vibenode.node import build

    hole = None
    gc.collect()
    node = build(port, board, cfg, port.log)
    del board, build
    _drop_boot_code()
except (ValueError, OSError) as e:  # ConfigError and BoardError are ValueErrors
    port.fatal(str(e), 2)
probe = getattr(port, "heap_probe", None)
if probe is not None:
    probe(node)  # the virtual board's heap figures (off unless asked for)
try:
    node.run()
except KeyboardInterrupt:
    node.uplink.close()
    node.journal.close()
except Exception as e:
    sys.print_exception(e, sys.stderr)
    port.fatal("node loop died: %r" % (e,), 1)
