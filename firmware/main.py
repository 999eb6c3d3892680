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
        del sys.modules["vibenode.config"]
        del vibenode.config
        gc.collect()


try:
    cfg = _load_config(port.config_path())
    board = port.load_board()
    from vibenode.node import build

    node = build(port, board, cfg, port.log)
except (ValueError, OSError) as e:  # ConfigError and BoardError are ValueErrors
    port.fatal(str(e), 2)
try:
    node.run()
except KeyboardInterrupt:
    node.uplink.close()
    node.journal.close()
except Exception as e:
    sys.print_exception(e, sys.stderr)
    port.fatal("node loop died: %r" % (e,), 1)
