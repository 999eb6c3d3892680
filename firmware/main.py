# Boot entry on every port (unix = the virtual board, esp32, rp2): pick the port, load the
# board and the node config, run the node. Config errors are printed and stop the node.
import sys

from ports import detect

port = detect()

from vibenode.config import ConfigError, load  # noqa: E402
from vibenode.node import build  # noqa: E402

try:
    cfg = load(port.config_path())
    board = port.load_board()
    node = build(port, board, cfg, port.log)
except (ConfigError, ValueError, OSError) as e:
    port.fatal(str(e), 2)
try:
    node.run()
except KeyboardInterrupt:
    node.uplink.close()
    node.journal.close()
except Exception as e:
    sys.print_exception(e, sys.stderr)
    port.fatal("node loop died: %r" % (e,), 1)
