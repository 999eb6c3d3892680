"""tools/vm32.py: the 32-bit MicroPython VM (Debian's i386 build) and how it is fetched."""

from __future__ import annotations

import hashlib
import http.server
import lzma
import subprocess
import threading

import pytest

from tools import vm32


def _run(code: str, heap: str = "64K") -> str:
    r = subprocess.run([vm32.check(), "-X", f"heapsize={heap}", "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_the_vm_is_a_32_bit_micropython_with_what_the_node_needs():
    out = _run(
        "import sys, gc, vfs, micropython\n"
        "@micropython.viper\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "print(sys.implementation.name, sys.maxsize, gc.mem_free() + gc.mem_alloc(), add(2, 3),"
        " hasattr(vfs, 'VfsLfs2'))"
    )
    name, maxsize, heap, viper, lfs = out.split()
    assert name == "micropython"
    assert int(maxsize) == 2**31 - 1  # 4-byte words: the objects are a device's size
    assert 60_000 < int(heap) <= 64 * 1024  # -X heapsize=64K is 64 KiB here
    assert viper == "5" and lfs == "True"


def test_a_64k_heap_really_ends_at_64k():
    out = _run("try:\n    b = bytearray(70000)\n    print('allocated')\nexcept MemoryError:\n    print('MemoryError')")
    assert out == "MemoryError"


class _Mirror(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "debian"
    root.mkdir()
    handler = lambda *a, **k: _Mirror(*a, directory=str(tmp_path), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}/debian"
    srv.shutdown()
    srv.server_close()


def _publish(root, rel: str, data: bytes) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_a_pinned_package_is_checked_against_its_pin(mirror, tmp_path, monkeypatch):
    root, url = mirror
    sha = _publish(root, "pool/main/x/pkg_1_i386.deb", b"the package")
    monkeypatch.setitem(vm32.PINS, "pkg", ("pool/main/x/pkg_1_i386.deb", sha))
    got = vm32._fetch(url, "pkg", tmp_path, {})
    assert got.read_bytes() == b"the package"
    # a mirror serving other bytes under the pinned name is refused
    _publish(root, "pool/main/x/pkg_1_i386.deb", b"tampered")
    got.unlink()
    with pytest.raises(vm32.VM32Error, match="SHA-256"):
        vm32._fetch(url, "pkg", tmp_path, {})


def test_a_pin_gone_from_the_mirror_is_taken_from_the_suite_index(mirror, tmp_path, monkeypatch):
    root, url = mirror
    monkeypatch.setitem(vm32.PINS, "pkg", ("pool/main/x/pkg_1_i386.deb", "0" * 64))
    sha = _publish(root, "pool/main/x/pkg_2_i386.deb", b"point release")
    index = (
        "Package: other\nFilename: pool/main/o/other.deb\nSHA256: " + "1" * 64 + "\n\n"
        f"Package: pkg\nVersion: 2\nFilename: pool/main/x/pkg_2_i386.deb\nSHA256: {sha}\n"
    )
    _publish(root, f"dists/{vm32.SUITE}/main/binary-{vm32.ARCH}/Packages.xz", lzma.compress(index.encode()))
    got = vm32._fetch(url, "pkg", tmp_path, {})
    assert got.name == "pkg_2_i386.deb" and got.read_bytes() == b"point release"


def test_the_mirror_comes_from_the_environment_or_apt(monkeypatch):
    monkeypatch.setenv("VIBEKIT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian/")
    assert vm32.debian_mirror() == "http://127.0.0.1:9/debian"
    monkeypatch.delenv("VIBEKIT_DEBIAN_MIRROR")
    try:
        m = vm32.debian_mirror()
    except vm32.VM32Error as e:  # a machine whose apt has no Debian archive: the error says what to set
        assert "VIBEKIT_DEBIAN_MIRROR" in str(e)
    else:
        assert m.endswith("/debian")
