# Minimal test runner for firmware modules on the MicroPython VM (no unittest there).
# Usage at the end of a test module:  mptest.main(globals())
import sys


def approx(a, b, rel=1e-6, abs_=0.0):
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %s" % (exc.__name__, fn))


def main(ns):
    names = sorted(k for k in ns if k.startswith("test_"))
    only = sys.argv[1:] if len(sys.argv) > 1 else None
    n = 0
    for name in names:
        if only and name not in only:
            continue
        ns[name]()
        n += 1
        print("pass", name)
    print("OK %d tests" % n)
