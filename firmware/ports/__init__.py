# Port layer: the only code that touches machine / network / esp32 / rp2 / the host OS.
# detect() picks the port module for the running MicroPython and returns its Port. The serial
# line's stream (StdioStream) is in ports.stdio, loaded only by nodes on the serial uplink.
import sys


def detect():
    plat = sys.platform
    if sys.implementation.name == "circuitpython":
        from ports import circuitpython as mod
    elif plat == "esp32":
        from ports import esp32 as mod
    elif plat == "rp2":
        from ports import rp2 as mod
    else:  # "linux", "darwin": the unix port is the virtual board
        from ports import unix as mod
    return mod.Port()


# Boot only: freed by vibenode.node.drop_boot_code() once the node is built (docs/firmware.md 6).
_BOOT_ONLY = ("detect",)
