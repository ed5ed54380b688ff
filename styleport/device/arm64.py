"""An aarch64 sysroot for running the real ARM kernels of LiteRT and ONNX Runtime under QEMU user
mode (issue 22): ``styleport device setup arm64`` builds it, the ``litert-arm64`` and
``onnxruntime-arm64`` runners (runtime/runners/arm64.py) use it.

What the sysroot holds, under the cache folder (default ``~/.cache/styleport/arm64``, else
``$STYLEPORT_ARM64_ROOT`` or ``--root``):

    apt/        a private apt configuration and state (arm64 only, Debian bookworm): the host's apt
                sources, architectures and dpkg database are not touched
    debs/       Debian's arm64 packages of Python 3.11 and the C/C++ libraries it and the wheels need
    wheels/     PyPI's aarch64 wheels of the runtime versions installed on this host (numpy,
                onnxruntime, ai-edge-litert) and their dependencies
    sysroot/    the packages unpacked with ``dpkg -x``, the wheels unzipped into
                /opt/styleport/site-packages, and an ARM /proc/cpuinfo
    arm64.json  what was installed (versions, sizes, step times)

QEMU (``qemu-aarch64`` from Debian's qemu-user) runs the sysroot's python3.11 with ``-L sysroot``:
the guest's absolute paths resolve inside the sysroot when the file exists there, on the host
otherwise (so models and temp files are read where they are). No binfmt registration is needed.
QEMU user mode shows the host's /proc/cpuinfo, an x86 one, on which ONNX Runtime's cpuinfo crashes
at import: the sysroot's own /proc/cpuinfo (a Cortex-A76) is what the guest reads instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from styleport.errors import BadInput, StyleportError

ROOT_ENV = "STYLEPORT_ARM64_ROOT"
MIRROR_ENV = "STYLEPORT_DEBIAN_MIRROR"
SUITE = "bookworm"            # Debian 12: Python 3.11, glibc 2.36 (the cp311 manylinux_2_28 wheels run on it)
PYTHON = "/usr/bin/python3.11"
SITE = "/opt/styleport/site-packages"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# the roots of the package closure; their Depends/Pre-Depends are followed (Recommends are not)
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1", "zlib1g")
# dependencies a python that only imports numpy and the runtimes never uses (package tools, perl,
# MIME tables): left out of the closure
SKIP = frozenset({"dpkg", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "install-info", "tar",
                  "mailcap", "mime-support", "media-types", "debconf", "readline-common"})
# host package -> distribution name on PyPI (the versions are read from this host's install)
WHEELS = (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai-edge-litert", "ai-edge-litert"))
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_28_aarch64", "manylinux_2_31_aarch64", "manylinux_2_34_aarch64",
             "manylinux_2_35_aarch64", "manylinux_2_36_aarch64")

# --arm-cpu -> QEMU -cpu. QEMU 7.2's "max" has SME, and XNNPACK's SME kernels then return wrong
# numbers under it, so "max" means
# max,sme=off and an SME-enabled CPU is refused.
CPUS = {"cortex-a76": "cortex-a76", "neoverse-n1": "neoverse-n1", "max": "max,sme=off"}
DEFAULT_CPU = "cortex-a76"

# A Cortex-A76 (r4p1, the big core of phones from 2019 on) as Linux shows it. One entry per possible
# processor number the host may have; cpuinfo libraries match them against /sys (the host's).
_CPUINFO_ENTRY = """processor\t: {n}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1

"""
CPUINFO_PROCESSORS = 256


class SetupMissing(StyleportError):
    """A host tool the setup needs is missing (exit 3, naming the package to install)."""

    exit_code = 3


def qemu_cpu(name: str | None) -> str:
    """The QEMU -cpu value for an --arm-cpu value; BadInput (exit 2) for an unknown or SME-enabled CPU."""
    text = (name or DEFAULT_CPU).strip().lower()
    base, _, props = text.partition(",")
    props_l = [p.strip() for p in props.split(",") if p.strip()]
    if any(p.startswith("sme") and p not in ("sme=off", "sme=false") for p in props_l):
        raise BadInput(f"--arm-cpu {name}: an SME-enabled CPU is refused: XNNPACK's SME kernels return wrong "
                       "results under QEMU 7.2; use "
                       "cortex-a76, neoverse-n1 or max (which means max,sme=off)")
    if base not in CPUS or any(p not in ("sme=off", "sme=false") for p in props_l):
        raise BadInput(f"--arm-cpu must be one of {', '.join(CPUS)}, got {name!r}")
    return CPUS[base]


def default_root() -> Path:
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "styleport" / "arm64"


def qemu_binary() -> str | None:
    for name in ("qemu-aarch64", "qemu-aarch64-static"):
        found = shutil.which(name)
        if found:
            return found
    return None


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = out.strip().splitlines()[0] if out.strip() else ""
    return first.replace("qemu-aarch64 version ", "") or "unknown"


def host_versions() -> dict:
    """{PyPI name: version} of the runtime packages installed on this host (the aarch64 wheels match them)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for host, dist in WHEELS:
        try:
            out[dist] = version(host)
        except PackageNotFoundError:
            raise SetupMissing(f"{host} is not installed on this host, so its version is unknown: "
                               "install styleport's dependencies first (pip install -e .)") from None
    return out


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                try:
                    total += os.path.getsize(p)
                except OSError:
                    pass
    return total


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


class Sysroot:
    """A built sysroot: where things are, and how to start the guest python."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.sysroot = self.root / "sysroot"
        self.stamp = self.root / "arm64.json"

    def ready(self) -> bool:
        return self.stamp.is_file() and (self.sysroot / PYTHON.lstrip("/")).is_file()

    def info(self) -> dict:
        try:
            return json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return {}

    def command(self, qemu: str, cpu: str, script: str) -> list[str]:
        return [qemu, "-L", str(self.sysroot), "-cpu", cpu, str(self.sysroot / PYTHON.lstrip("/")), "-u", script]

    @staticmethod
    def env() -> dict:
        """The guest's environment: none of the host's Python or loader variables."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env.update({"PYTHONPATH": SITE, "PYTHONNOUSERSITE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
        return env


def find(root: Path | None = None) -> Sysroot:
    """The built sysroot, or RuntimeUnavailable (exit 3) saying how to build it."""
    from styleport.runtime.runners.base import RuntimeUnavailable
    if qemu_binary() is None:
        raise RuntimeUnavailable("qemu-aarch64 not found: install QEMU user mode (apt-get install qemu-user), "
                                 "then run `styleport device setup arm64`")
    s = Sysroot(root or default_root())
    if not s.ready():
        raise RuntimeUnavailable(f"no arm64 sysroot at {s.root}: build it with `styleport device setup arm64` "
                                 f"(or point ${ROOT_ENV} at one)")
    have = s.info().get("wheels", {})
    try:
        want = host_versions()
    except SetupMissing:
        want = {}
    stale = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if stale:
        raise RuntimeUnavailable("the arm64 sysroot's runtime versions differ from this host's ("
                                 + ", ".join(f"{k} {a} there, {b} here" for k, (a, b) in stale.items())
                                 + "): run `styleport device setup arm64` again")
    return s


# ---- setup ---------------------------------------------------------------------------------------

class _Apt:
    """apt-get / apt-cache with a private configuration: arm64 only, its own lists, cache and an
    empty dpkg status, so the host's apt setup is neither read nor changed."""

    def __init__(self, root: Path, mirror: str):
        self.dir = root / "apt"
        self.conf = self.dir / "apt.conf"
        self.mirror = mirror.rstrip("/")

    def write_config(self):
        d = self.dir
        for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/sources.list.d", "etc/trusted.gpg.d",
                    "state/lists/partial", "cache/archives/partial", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "state" / "status").touch()
        signed = f"signed-by={KEYRING}"
        m = self.mirror
        sec = "http://deb.debian.org/debian-security" if "deb.debian.org" in m else None
        lines = [f"deb [arch=arm64 {signed}] {m} {SUITE} main",
                 f"deb [arch=arm64 {signed}] {m} {SUITE}-updates main"]
        if sec:
            lines.append(f"deb [arch=arm64 {signed}] {sec} {SUITE}-security main")
        (d / "etc" / "sources.list").write_text("\n".join(lines) + "\n")
        self.conf.write_text("\n".join([
            f'Dir::State "{d}/state/";', f'Dir::State::status "{d}/state/status";',
            f'Dir::Cache "{d}/cache/";', f'Dir::Etc "{d}/etc/";', f'Dir::Etc::Parts "{d}/etc/apt.conf.d/";',
            f'Dir::Log "{d}/log/";', 'APT::Architecture "arm64";', 'APT::Architectures { "arm64"; };',
            'APT::Sandbox::User "root";', 'Debug::NoLocking "true";', 'Acquire::Languages "none";', ""]))

    def run(self, args: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        try:
            p = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StyleportError(f"{' '.join(args[:2])} timed out after {timeout:.0f} s", 3) from None
        if p.returncode != 0:
            tail = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()][-1:] or ["?"]
            raise StyleportError(f"{' '.join(args[:2])} failed: {tail[0][:300]}", 3)
        return p.stdout

    def closure(self, roots) -> list[str]:
        """The arm64 packages ``roots`` need (Depends and Pre-Depends, first of each alternative)."""
        seen, todo = set(), [r for r in roots]
        while todo:
            batch = [t for t in dict.fromkeys(todo) if t not in seen]
            todo = []
            if not batch:
                break
            seen.update(batch)
            out = self.run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                            "--no-breaks", "--no-replaces", "--no-enhances", *batch])
            alt = False
            for line in out.splitlines():
                s = line.strip()
                if not line.startswith(" "):
                    alt = False
                    continue
                kind, _, name = s.partition(":")
                name = name.strip().split(":")[0]
                if kind.lstrip("|") not in ("Depends", "PreDepends") or name.startswith("<"):
                    alt = kind.startswith("|")
                    continue
                if not alt and name not in SKIP and name not in seen:
                    todo.append(name)
                alt = kind.startswith("|")  # the next line is an alternative of this one
        return sorted(seen)


def _step(n: int, total: int, label: str, t0: float, detail: str):
    print(f"[{n}/{total}] {label}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)


def setup(root: Path | None = None, mirror: str | None = None, refresh: bool = False) -> dict:
    """Build (or complete) the sysroot; one line per step on stdout. Returns the stamp dict."""
    root = Path(root or default_root()).expanduser().resolve()
    mirror = mirror or os.environ.get(MIRROR_ENV) or "http://deb.debian.org/debian"
    total, t_all = 8, time.perf_counter()
    steps = {}

    # 1. host tools
    t0 = time.perf_counter()
    qemu = qemu_binary()
    if qemu is None:
        raise SetupMissing("qemu-aarch64 not found: install QEMU user mode first (apt-get install qemu-user)")
    for tool, pkg in (("apt-get", "apt"), ("apt-cache", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            raise SetupMissing(f"{tool} not found: the arm64 sysroot is built from Debian packages "
                               f"(a Debian or Ubuntu host with {pkg} is needed)")
    if not Path(KEYRING).is_file():
        raise SetupMissing(f"{KEYRING} not found: apt-get install debian-archive-keyring")
    qv = qemu_version(qemu)
    versions = host_versions()
    root.mkdir(parents=True, exist_ok=True)
    _step(1, total, "host tools", t0, f"{qemu} ({qv}); cache {root}")
    steps["host"] = round(time.perf_counter() - t0, 2)

    # 2. private apt index (arm64, Debian bookworm)
    t0 = time.perf_counter()
    apt = _Apt(root, mirror)
    apt.write_config()
    lists = apt.dir / "state" / "lists"
    if refresh or not any(lists.glob("*_Packages*")):
        apt.run(["apt-get", "update", "-q"])
        detail = f"fetched ({_mb(dir_bytes(lists))}, {mirror} {SUITE} arm64; private config {apt.conf})"
    else:
        detail = f"cached ({_mb(dir_bytes(lists))})"
    _step(2, total, "apt index", t0, detail)
    steps["apt_index"] = round(time.perf_counter() - t0, 2)

    # 3. the arm64 .debs
    t0 = time.perf_counter()
    pkgs = apt.closure(PACKAGES)
    debs = root / "debs"
    debs.mkdir(exist_ok=True)
    marker = debs / ".packages"
    if marker.is_file() and marker.read_text().split() == pkgs and not refresh:
        detail = f"{len(pkgs)} packages cached ({_mb(dir_bytes(debs))})"
    else:
        for old in debs.glob("*.deb"):
            old.unlink()
        apt.run(["apt-get", "download", "-q", *pkgs], cwd=debs)
        marker.write_text("\n".join(pkgs) + "\n")
        detail = f"{len(pkgs)} packages downloaded ({_mb(dir_bytes(debs))})"
    _step(3, total, "arm64 packages", t0, detail)
    steps["debs"] = round(time.perf_counter() - t0, 2)

    # 4. unpack them
    t0 = time.perf_counter()
    sysroot = root / "sysroot"
    unpacked = root / ".unpacked"
    want = marker.read_text()
    if unpacked.is_file() and unpacked.read_text() == want and (sysroot / PYTHON.lstrip("/")).is_file():
        detail = "already unpacked"
    else:
        if sysroot.exists():
            shutil.rmtree(sysroot)
        sysroot.mkdir()
        for deb in sorted(debs.glob("*.deb")):
            p = subprocess.run(["dpkg-deb", "-x", str(deb), str(sysroot)], capture_output=True, text=True)
            if p.returncode != 0:
                raise StyleportError(f"dpkg-deb -x {deb.name} failed: {(p.stderr or '').strip()[:200]}", 3)
        unpacked.write_text(want)
        detail = f"{len(list(debs.glob('*.deb')))} packages into {sysroot}"
    _step(4, total, "unpack", t0, detail)
    steps["unpack"] = round(time.perf_counter() - t0, 2)

    # 5. the aarch64 wheels of this host's runtime versions
    t0 = time.perf_counter()
    wheels = root / "wheels"
    wheels.mkdir(exist_ok=True)
    wmarker = wheels / ".versions"
    pins = [f"{k}=={v}" for k, v in versions.items()]
    if wmarker.is_file() and wmarker.read_text().split() == pins and not refresh:
        detail = f"cached ({', '.join(pins)})"
    else:
        for old in wheels.glob("*.whl"):
            old.unlink()
        plat = [a for p in PLATFORMS for a in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(wheels),
               "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
               *plat, *pins]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            errs = [ln for ln in (p.stderr or "").splitlines() if ln.startswith("ERROR")] or \
                   (p.stderr or "?").strip().splitlines()[-1:]
            raise StyleportError(f"pip download of the aarch64 wheels failed: {errs[0][:300]}", 3)
        wmarker.write_text("\n".join(pins) + "\n")
        detail = f"{len(list(wheels.glob('*.whl')))} wheels downloaded ({_mb(dir_bytes(wheels))}: {', '.join(pins)})"
    _step(5, total, "aarch64 wheels", t0, detail)
    steps["wheels"] = round(time.perf_counter() - t0, 2)

    # 6. unzip them into the sysroot's site-packages
    t0 = time.perf_counter()
    site = sysroot / SITE.lstrip("/")
    smarker = root / ".installed-wheels"
    names = sorted(w.name for w in wheels.glob("*.whl"))
    if smarker.is_file() and smarker.read_text().split() == names and site.is_dir():
        detail = "already installed"
    else:
        import zipfile
        if site.exists():
            shutil.rmtree(site)
        site.mkdir(parents=True)
        for name in names:
            with zipfile.ZipFile(wheels / name) as z:
                z.extractall(site)
        smarker.write_text("\n".join(names) + "\n")
        detail = f"{len(names)} wheels into {SITE}"
    _step(6, total, "install wheels", t0, detail)
    steps["install"] = round(time.perf_counter() - t0, 2)

    # 7. the ARM /proc/cpuinfo the guest reads (QEMU -L) instead of the host's x86 one
    t0 = time.perf_counter()
    cpuinfo = sysroot / "proc" / "cpuinfo"
    cpuinfo.parent.mkdir(exist_ok=True)
    text = "".join(_CPUINFO_ENTRY.format(n=i) for i in range(CPUINFO_PROCESSORS))
    if not cpuinfo.is_file() or cpuinfo.read_text() != text:
        cpuinfo.write_text(text)
    _step(7, total, "ARM /proc/cpuinfo", t0, "Cortex-A76 r4p1 (the guest's, not the host's x86 one)")
    steps["cpuinfo"] = round(time.perf_counter() - t0, 2)

    # 8. start the guest python and import the runtimes
    t0 = time.perf_counter()
    s = Sysroot(root)
    probe = ("import json, platform, sys, numpy, onnxruntime, ai_edge_litert.interpreter as L; "
             "from importlib.metadata import version as v; "
             "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), "
             "'numpy': numpy.__version__, 'onnxruntime': onnxruntime.__version__, "
             "'ai-edge-litert': v('ai-edge-litert')}))")
    cmd = [qemu, "-L", str(sysroot), "-cpu", CPUS[DEFAULT_CPU], str(sysroot / PYTHON.lstrip("/")), "-c", probe]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=Sysroot.env(), timeout=600)
    except subprocess.TimeoutExpired:
        raise StyleportError("the aarch64 python did not start within 600 s under QEMU", 3) from None
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = [ln for ln in (p.stderr or "").splitlines() if ln.strip()][-1:] or [f"exit status {p.returncode}"]
        raise StyleportError(f"the aarch64 python cannot import the runtimes under QEMU: {tail[0][:300]}", 3)
    guest = json.loads(lines[-1])
    _step(8, total, "check", t0, f"{guest['machine']} python {guest['python']}: numpy {guest['numpy']}, "
                                 f"onnxruntime {guest['onnxruntime']}, ai-edge-litert {guest['ai-edge-litert']}")
    steps["check"] = round(time.perf_counter() - t0, 2)

    size = dir_bytes(root)
    doc = {"qemu": qv, "qemu_binary": qemu, "debian": f"{SUITE} arm64", "mirror": mirror,
           "packages": pkgs, "wheels": versions, "wheel_files": names, "guest": guest,
           "disk_bytes": {"total": size, "sysroot": dir_bytes(sysroot), "debs": dir_bytes(debs),
                          "wheels": dir_bytes(wheels)},
           "step_seconds": steps, "seconds": round(time.perf_counter() - t_all, 2)}
    s.stamp.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"arm64 sysroot ready: {root} ({_mb(size)} on disk, of which sysroot {_mb(doc['disk_bytes']['sysroot'])}; "
          f"{doc['seconds']:.1f} s)")
    return doc
