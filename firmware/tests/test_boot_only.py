# heap: 256K
# The boot-only lists (_BOOT_ONLY) that vibenode.node.drop_boot_code() frees once the node is
# built: every entry must name something that exists (a renamed method would make the boot
# fail at the drop), and the drop must free module names and methods alike.
import sys

import mptest
from vibenode.node import drop_boot_code

# the modules a node loads on the virtual board (ports._board: see test_board_port_list)
MODULES = (
    "ports", "ports.unix", "ports.unix_flash", "drivers.errors", "drivers.sim_accel", "drivers.sim_temp",
    "vibenode.acquisition", "vibenode.clock", "vibenode.codec", "vibenode.features", "vibenode.journal",
    "vibenode.node", "vibenode.status", "vibenode.uplink_mqtt", "vibenode.uplink_serial",
)


def _check(mod, entries):
    for e in entries:
        if isinstance(e, tuple):
            cls = getattr(mod, e[0])
            assert isinstance(cls, type), (mod, e)
            for attr in e[1:]:
                assert attr in cls.__dict__, (mod, e[0], attr)  # the class's own, not inherited
        else:
            assert isinstance(e, str) and hasattr(mod, e), (mod, e)


def test_every_entry_exists():
    for name in MODULES:
        __import__(name)
        mod = sys.modules[name]
        entries = getattr(mod, "_BOOT_ONLY", None)
        assert entries, name
        _check(mod, entries)


def test_board_port_list():
    # ports/_board.py imports machine (MCU ports only): check its names against its source
    import vibenode

    path = vibenode.__file__.rsplit("/", 2)[0] + "/ports/_board.py"
    try:
        src = open(path).read()
    except OSError:
        return  # a .mpy tree without sources
    start = src.index("_BOOT_ONLY = ")
    names = src[start:].split("(", 2)[2].split(")")[0]
    cls = None
    for part in names.split(","):
        part = part.strip().strip('"')
        if not part:
            continue
        if cls is None:
            cls = part
            assert "class %s" % cls in src
        else:
            assert "    def %s(" % part in src, part


class _Mod:
    pass


class _Cls:
    def boot(self):
        return 1

    def run(self):
        return 2


def test_drop_frees_names_and_methods():
    m = _Mod()
    m.helper = lambda: 0
    m.Cls = _Cls
    m._BOOT_ONLY = ("helper", ("Cls", "boot"))
    drop_boot_code(m)
    assert not hasattr(m, "helper") and not hasattr(m, "_BOOT_ONLY")
    assert _Cls.boot is None and _Cls().run() == 2
    drop_boot_code(m)  # a module dropped once has nothing left to drop


mptest.main(globals())
