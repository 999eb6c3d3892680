# Boot entry on every port (unix = the virtual board, esp32, rp2): pick the port, load the
# board and the node config, run the node. Config errors are printed and stop the node.
#
# Heap order (docs/firmware.md section 6): the config is validated and the validator dropped;
# then build() takes the parts one by one: it loads a part's code, allocates the part's
# buffers (the biggest first, while the heap is in one piece) and frees the part's boot-only
# code (its module's _BOOT_ONLY: constructors, the journal's boot scan, ...) before the next
# part, so the boot's peak stays close to the running node's heap. What is left of the boot
# code (the port's boot calls, build() itself) is dropped once the node is built.
# Straight-line code, no functions: every function and global of this module would stay in
# the heap for the node's whole life.
import gc
import sys

import vibenode
from ports import detect

port = detect()
del detect
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
    from vibenode.node import build

    # build() loads each part's code, allocates the part's buffers, then frees its boot-only
    # code: the board dict and the sensor tables are dropped by it too
    node = build(port, port.load_board(), cfg, port.log, drop_boot=True)
    del build, cfg
except (ValueError, OSError) as e:  # ConfigError and BoardError are ValueErrors
    port.fatal(str(e), 2)
if hasattr(port, "heap_probe"):
    port.heap_probe(node)  # the virtual board's heap figures (off unless asked for)
# the constructors, boot scans and port calls of every module (their _BOOT_ONLY lists)
from vibenode.node import drop_boot_code  # noqa: E402

drop_boot_code()
del drop_boot_code
gc.collect()
try:
    node.run()
except KeyboardInterrupt:
    node.uplink.close()
    node.journal.close()
except Exception as e:
    sys.print_exception(e, sys.stderr)
    port.fatal("node loop died: %r" % (e,), 1)
