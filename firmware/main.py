# Boot entry on every port (unix = the virtual board, esp32, rp2): pick the port, load the
# board and the node config, run the node. Config errors are printed and stop the node.
#
# Heap order (docs/firmware.md section 6), all in vibenode.node.boot(): the config is validated
# and the validator dropped; then build() takes the parts one by one: it loads a part's code,
# allocates the part's buffers (the biggest first) and frees the part's boot-only code (its
# module's _BOOT_ONLY: constructors, the journal's boot scan, ...) before the next part, so
# the boot's peak stays close to the running node's heap; what is left of the boot code (the
# port's boot calls, build(), boot()) is dropped once the node is built. This module runs for
# the node's whole life, so it stays this short: no functions, few globals.
import sys

from ports import detect

port = detect()  # the virtual board moves to its code directory here (ports/unix.py)
del detect
try:
    from vibenode.node import boot

    node = boot(port)  # config, the node built part by part, the boot-only code freed
    del boot
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
