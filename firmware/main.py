# Boot entry on every port (unix = the virtual board, esp32, rp2): pick the port, load the
# board and the node config, run the node. Config errors are printed and stop the node.
#
# Heap order (docs/firmware.md section 6): the config is validated and the validator dropped;
# one block the size of the node's buffers is reserved before any node code is loaded, then
# freed just before build() so the buffers find one contiguous hole instead of the gaps
# between code objects; what only boot needs (validator, sensor tables, build(), the board
# dict) is dropped once the node is built. Straight-line code, no functions: every function
# and global of this module would stay in the heap for the node's whole life.
import gc
import sys

import vibenode
from ports import detect

port = detect()
try:
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
    w = cfg["window"]["n"]
    try:  # samples 6n, FFT 4n, batch, journal staging, flash chunks
        hole = bytearray(10 * w + cfg["batch"]["max_bytes"] + cfg["journal"]["stage_bytes"] + 2048)
    except MemoryError:
        hole = None
    board = port.load_board()
    # every module the node will run, before any of its buffers exists
    import vibenode.acquisition  # noqa: F401
    import vibenode.features  # noqa: F401
    import vibenode.journal  # noqa: F401
    from vibenode import sensors
    from vibenode.node import build

    w = sensors.sensor_specs(board)
    for w in (w["accel"] and sensors.ACCEL_DRIVERS.get(w["accel"]["driver"]),
              w["temp"] and sensors.TEMP_DRIVERS.get(w["temp"]["driver"])):
        if w:
            try:
                __import__(w[0])
            except ImportError:
                pass  # build() reports it
    if cfg["uplink"] == "mqtt":
        import vibenode.uplink_mqtt  # noqa: F401
    else:
        import vibenode.uplink_serial  # noqa: F401
    if hasattr(port, "preload"):
        port.preload(board)
    hole = w = None
    gc.collect()
    node = build(port, board, cfg, port.log)
    # boot-only code and data: on the 64-bit VM every function costs ~100 bytes besides its
    # bytecode, every global ~60
    del board, build, cfg, hole, w, sensors
    sys.modules.pop("vibenode.sensors", None)
    if hasattr(vibenode, "sensors"):
        del vibenode.sensors
    del sys.modules["vibenode.node"].build
    gc.collect()
except (ValueError, OSError) as e:  # ConfigError and BoardError are ValueErrors
    port.fatal(str(e), 2)
if hasattr(port, "heap_probe"):
    port.heap_probe(node)  # the virtual board's heap figures (off unless asked for)
try:
    node.run()
except KeyboardInterrupt:
    node.uplink.close()
    node.journal.close()
except Exception as e:
    sys.print_exception(e, sys.stderr)
    port.fatal("node loop died: %r" % (e,), 1)
