"""Device profiles: how to run inference on one kind of hardware, and host detection.

A profile (devices/NAME.toml) sets threads, GPU layers, batch and context
sizes, onnxruntime execution providers, a memory budget and the peak memory
bandwidth used by the roofline. `detect_host()` reads this machine and
`closest_profile()` names the profile that fits it best.
"""

from __future__ import annotations

import math
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import catalog, numbers
from harness.errors import UsageError
from harness.tomlfile import read_toml

GIB = 1024**3
# Share of the machine other processes may take during a sample before it is flagged contended
# (harness.telemetry.interference explains the choice); a profile's contention_threshold overrides it.
DEFAULT_CONTENTION_THRESHOLD = 0.05


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str = ""
    kind: str = "cpu"  # cpu | cuda | jetson
    threads: int = 0  # 0 = the host's physical cores
    n_gpu_layers: int = 0  # llama.cpp layers offloaded to the GPU (-1 = all)
    n_batch: int = 512
    n_ctx: int = 2048
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    memory_budget_bytes: int = 4 * GIB
    peak_bandwidth_gbps: float | None = None  # GB/s (1e9 bytes), peak memory bandwidth
    cpu_cores: int | None = None
    ram_bytes: int | None = None
    gpu: str | None = None
    notes: str = ""
    source: str = ""
    match: dict[str, Any] = field(default_factory=dict)
    contention_threshold: float = DEFAULT_CONTENTION_THRESHOLD

    def resolved_threads(self) -> int:
        if self.threads > 0:
            return self.threads
        return physical_cores()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["onnx_providers"] = list(self.onnx_providers)
        return d


def check_contention_threshold(value: Any, where: str) -> float:
    """A contention threshold is a share of the machine in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= 1:
        raise UsageError(f"{where}: a contention threshold is a share of the machine in (0, 1], e.g. 0.1 for "
                         f"10%, not {value!r}")
    return float(value)


def _parse_bytes(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected a size such as '4GB', got {value!r}")
    if isinstance(value, int):
        if not 0 < value <= numbers.INT_MAX:
            raise UsageError(f"{where}: a size must be positive and below 8 EiB, not {numbers.describe_int(value)}: "
                             "write it like 4GB")
        return value
    if isinstance(value, str):
        return parse_size(value, where)
    raise UsageError(f"{where}: expected a size such as '4GB', got {value!r}")


def parse_size(text: str, where: str = "size") -> int:
    """Parse '4GB', '512MiB', '8 GiB', '1.5G' (decimal units for GB, binary for GiB)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"{where}: cannot read size {text!r}: write it like 4GB, 512MiB or 8GiB")
    unit, binary = m.group(2).upper(), m.group(3)
    try:
        size = numbers.parse_float(m.group(1)) * (1024 if binary else 1000) ** (" KMGT".index(unit) if unit else 0)
    except numbers.OutOfRange:
        size = float("inf")
    if not 1 <= size <= numbers.INT_MAX:
        raise UsageError(f"{where}: a size must be positive and below 8 EiB, not {numbers.describe(text)}: write it "
                         "like 4GB")
    return int(size)


KINDS = ("cpu", "cuda", "jetson")
# integer fields: (lowest, highest, what the value means); llama.cpp crashes on some out-of-range values
INT_FIELDS: dict[str, tuple[int, int, str]] = {
    "threads": (0, 1024, "0 = the host's physical cores, else a thread count"),
    "n_gpu_layers": (-1, 100_000, "-1 = all layers on the GPU, 0 = none"),
    "n_batch": (1, 1 << 20, "tokens per llama.cpp batch, e.g. 512"),
    "n_ctx": (64, 1 << 24, "context tokens, e.g. 2048"),
    "cpu_cores": (1, 100_000, "physical cores"),
}


def check_fields(data: dict[str, Any], where: str) -> None:
    """Every field of a profile checked for type and range before anything runs: one line names the file, the
    field and the allowed values."""
    for key, (lo, hi, meaning) in INT_FIELDS.items():
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise UsageError(f"{where}: {key} = {v!r} must be a whole number from {lo} to {hi} ({meaning})")
            if not lo <= v <= hi:
                raise UsageError(f"{where}: {key} = {v} is out of range: use {lo} to {hi} ({meaning})")
    for key in ("name", "description", "notes", "gpu"):
        if key in data and not isinstance(data[key], str):
            raise UsageError(f"{where}: {key} must be a string, not {data[key]!r}")
    if "name" in data:
        from harness.variants.manifest import check_plain_name

        check_plain_name(data["name"], "device name", where)
    if "kind" in data and data["kind"] not in KINDS:
        raise UsageError(f"{where}: kind = {data['kind']!r} is unknown: use one of {', '.join(KINDS)}")
    providers = data.get("onnx_providers", ["CPUExecutionProvider"])
    if not isinstance(providers, list) or not providers or not all(isinstance(x, str) and x for x in providers):
        raise UsageError(f"{where}: onnx_providers must be a non-empty list of onnxruntime provider names, e.g. "
                         "[\"CUDAExecutionProvider\", \"CPUExecutionProvider\"]")
    if "peak_bandwidth_gbps" in data:
        v = data["peak_bandwidth_gbps"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UsageError(f"{where}: peak_bandwidth_gbps = {v!r} must be a positive number of GB/s "
                             "(measure it with `harness devices probe`)")
    if "match" in data and not isinstance(data["match"], dict):
        raise UsageError(f"{where}: match must be a table")


def load_profile(name_or_path: str) -> DeviceProfile:
    path = catalog.find("devices", name_or_path)
    data = read_toml(path)
    where = str(path)
    known = set(DeviceProfile.__dataclass_fields__) | {"memory_budget", "ram"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"{where}: unknown fields {sorted(unknown)}: known fields are {sorted(known - {'source'})}")
    if "source" in data:
        raise UsageError(f"{where}: 'source' is set by harness (the file's path): remove it")
    check_fields(data, where)
    kwargs = dict(data)
    kwargs.setdefault("name", path.stem)
    if "memory_budget" in kwargs:
        kwargs["memory_budget_bytes"] = _parse_bytes(kwargs.pop("memory_budget"), f"{where}: memory_budget")
    if "ram" in kwargs:
        kwargs["ram_bytes"] = _parse_bytes(kwargs.pop("ram"), f"{where}: ram")
    if "onnx_providers" in kwargs:
        kwargs["onnx_providers"] = tuple(kwargs["onnx_providers"])
    kwargs["source"] = str(path)
    if "contention_threshold" in kwargs:
        kwargs["contention_threshold"] = check_contention_threshold(kwargs["contention_threshold"],
                                                                    f"{where}: contention_threshold")
    try:
        return DeviceProfile(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}") from exc


def list_profiles() -> list[DeviceProfile]:
    return [load_profile(str(p)) for p in catalog.entries("devices").values()]


# -- host detection ---------------------------------------------------------------


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("flags", "features")):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def jetson_release(root: Path = Path("/")) -> str | None:
    """The L4T release line of a Jetson (/etc/nv_tegra_release), or None elsewhere."""
    f = root / "etc" / "nv_tegra_release"
    try:
        return f.read_text(errors="replace").splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def device_tree_model(root: Path = Path("/")) -> str | None:
    f = root / "proc" / "device-tree" / "model"
    try:
        return f.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None


def nvidia_gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs via NVML (nvidia-ml-py); empty when NVML or a GPU is absent."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError when no driver is loaded
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name, "memory_bytes": int(mem.total)})
        return out
    finally:
        pynvml.nvmlShutdown()


@dataclass
class HostInfo:
    cpu_model: str
    physical_cores: int
    logical_cores: int
    ram_bytes: int
    machine: str
    system: str
    gpus: list[dict[str, Any]]
    jetson_release: str | None
    board_model: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect_host() -> HostInfo:
    import psutil

    return HostInfo(
        cpu_model=cpu_model(),
        physical_cores=physical_cores(),
        logical_cores=psutil.cpu_count() or 1,
        ram_bytes=int(psutil.virtual_memory().total),
        machine=platform.machine(),
        system=platform.system(),
        gpus=nvidia_gpus(),
        jetson_release=jetson_release(),
        board_model=device_tree_model(),
    )


def closest_profile(host: HostInfo, profiles: list[DeviceProfile] | None = None) -> tuple[DeviceProfile, str]:
    """The profile that fits the host best, and why.

    A profile's [match] table may name `board` (substring of the device-tree
    model), `gpu` (substring of an NVIDIA GPU name) or `jetson = true`; among
    generic CPU profiles the one whose core count is nearest wins.
    """
    profiles = profiles if profiles is not None else list_profiles()
    if not profiles:
        raise UsageError("no device profiles found: add a devices/*.toml file or pass --catalog DIR")
    board = (host.board_model or "").lower()
    for p in profiles:
        want = str(p.match.get("board", "")).lower()
        if want and want in board:
            return p, f"board model '{host.board_model}' matches '{p.match['board']}'"
    if host.jetson_release:
        jetsons = [p for p in profiles if p.kind == "jetson"]
        if jetsons:
            best = min(jetsons, key=lambda p: abs((p.ram_bytes or 0) - host.ram_bytes))
            return best, f"Jetson ({host.jetson_release}); nearest RAM size"
    if host.gpus:
        names = " ".join(g["name"].lower() for g in host.gpus)
        for p in profiles:
            want = str(p.match.get("gpu", "")).lower()
            if p.kind == "cuda" and want and want in names:
                return p, f"NVIDIA GPU '{host.gpus[0]['name']}' matches '{p.match['gpu']}'"
        cudas = [p for p in profiles if p.kind == "cuda"]
        if cudas:
            return cudas[0], f"NVIDIA GPU '{host.gpus[0]['name']}' found; generic CUDA profile"
    cpus = [p for p in profiles if p.kind == "cpu" and not p.match.get("board")]
    if not cpus:
        cpus = profiles
    best = min(cpus, key=lambda p: (abs((p.cpu_cores or 4) - host.physical_cores), p.name))
    return best, f"CPU only, {host.physical_cores} physical cores; nearest generic CPU profile"


def resolve_device(name: str | None) -> tuple[DeviceProfile, str]:
    """A profile by name, or the detected one for None / 'auto'."""
    if not name or name == "auto":
        return closest_profile(detect_host())
    return load_profile(name), "named on the command line"

