"""Native llama.cpp's `llama-bench`, built from the same vendored source as the installed llama-cpp-python: where to
find it, how to build it, how to run it.

Found, in order: a path given on the command line (`--llama-bench PATH`), $HARNESS_LLAMA_BENCH, an earlier build in
the harness cache (<cache>/llama-bench/<llama-cpp-python version>/build/bin/llama-bench). `build_llama_bench` makes
that build: it downloads the sdist of the installed llama-cpp-python version from the package index (pip), and
builds the `llama-bench` target of its vendored llama.cpp with CMake (Release, -DLLAMA_CURL=OFF, llama.cpp's own
defaults otherwise: -march=native and OpenMP, as the wheel was built on this host).

Not a harness module: benchmarks import it from their own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_dir
from harness.telemetry.interference import interference, parse_proc_stat, parse_self_stat

ENV = "HARNESS_LLAMA_BENCH"


def installed_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


def cached_build_dir(version: str | None = None) -> Path:
    return cache_dir() / "llama-bench" / (version or installed_version())


def find_llama_bench(path: str | None = None) -> Path | None:
    """The llama-bench to use: `path`, else $HARNESS_LLAMA_BENCH, else a cached build; None when there is none. A
    path given but not executable is an error (SystemExit with one line)."""
    given = path or os.environ.get(ENV)
    if given:
        p = Path(given).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            where = "--llama-bench" if path else f"${ENV}"
            raise SystemExit(f"{where}: {p} is not an executable llama-bench (build one with --build-llama-bench)")
        return p
    cached = cached_build_dir() / "build" / "bin" / "llama-bench"
    return cached if cached.is_file() else None


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    print(f"  $ {' '.join(cmd)}  (log: {log})", flush=True)
    with log.open("a") as out:
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"building llama-bench failed (exit {rc}): see {log}")


def build_llama_bench(jobs: int = 2) -> Path:
    """Build llama-bench from the installed llama-cpp-python version's sdist into the harness cache; its path."""
    version = installed_version()
    root = cached_build_dir(version)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "build.log"
    print(f"building llama-bench from llama-cpp-python {version}'s vendored llama.cpp in {root}", flush=True)
    sdist = next(iter(sorted(root.glob("llama_cpp_python-*.tar.gz"))), None)
    if sdist is None:
        _run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
              "--no-binary", ":all:", "-d", str(root)], log)
        sdist = next(iter(sorted(root.glob("llama_cpp_python-*.tar.gz"))), None)
        if sdist is None:
            raise SystemExit(f"pip did not leave an sdist of llama-cpp-python {version} in {root}: see {log}")
    src = root / "src"
    if not src.is_dir():
        with tarfile.open(sdist) as tar:
            tar.extractall(src, filter="data")
    vendored = next(src.glob("*/vendor/llama.cpp"), None)
    if vendored is None:
        raise SystemExit(f"{sdist} has no vendor/llama.cpp")
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SystemExit("building llama-bench needs cmake (and a C++ compiler) on the PATH")
    build = root / "build"
    _run([cmake, "-S", str(vendored), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF"], log)
    _run([cmake, "--build", str(build), "--target", "llama-bench", "-j", str(jobs)], log)
    binary = build / "bin" / "llama-bench"
    if not binary.is_file():
        raise SystemExit(f"the build did not make {binary}: see {log}")
    return binary


@dataclass(frozen=True)
class BenchResult:
    """One llama-bench test: decode (tg) tokens/s at a flash-attention setting and a context depth."""

    flash_attn: str  # as llama-bench reports it: "auto" (resolved to on where the device supports it), "on", "off"
    n_depth: int  # tokens already in the context before the timed decode
    n_gen: int
    tg_tps: float  # llama-bench's avg_ts: mean over its repetitions


@dataclass(frozen=True)
class BenchRun:
    results: list[BenchResult]
    interference_frac: float | None  # other processes' share of the CPUs while llama-bench ran
    wall_s: float


_FA_NAMES = {-1: "auto", 0: "off", 1: "on"}


def parse_json(text: str) -> list[BenchResult]:
    """llama-bench's `-o json` output: one entry per test."""
    rows = json.loads(text)
    out = []
    for r in rows:
        fa = r.get("flash_attn")
        out.append(BenchResult(_FA_NAMES.get(fa, str(fa)) if isinstance(fa, int) else str(fa), int(r.get("n_depth", 0)),
                               int(r["n_gen"]), float(r["avg_ts"])))
    return out


def _cpu_reading() -> tuple[object, float | None]:
    """/proc/stat and this process's CPU time including its waited-for children (llama-bench)."""
    own = parse_self_stat(Path("/proc/self/stat").read_text())
    t = os.times()
    return (parse_proc_stat(Path("/proc/stat").read_text()),
            None if own is None else own + t.children_user + t.children_system)


def run_llama_bench(binary: Path, model: Path, *, threads: int, n_gen: int, repetitions: int,
                    flash_attn: str = "auto", depths: tuple[int, ...] = (0,)) -> BenchRun:
    """`llama-bench -m MODEL -p 0 -n N -t T -r R -fa FA -d D[,D...] -o json`: decode only, as llama.cpp times it."""
    cmd = [str(binary), "-m", str(model), "-p", "0", "-n", str(n_gen), "-t", str(threads), "-r", str(repetitions),
           "-fa", flash_attn, "-d", ",".join(map(str, depths)), "-o", "json"]
    before = _cpu_reading()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = _cpu_reading()
    if proc.returncode != 0:
        raise SystemExit(f"llama-bench failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    frac = None
    if before[0] is not None and after[0] is not None and before[1] is not None and after[1] is not None:
        f, steal = interference(before[0], after[0], before[1], after[1])  # type: ignore[arg-type]
        frac = None if f is None else f + (steal or 0.0)
    return BenchRun(parse_json(proc.stdout), frac, wall)
