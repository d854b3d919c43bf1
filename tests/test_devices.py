from pathlib import Path

import pytest

from harness import catalog
from harness.devices import HostInfo, closest_profile, jetson_release, list_profiles, load_profile, parse_size
from harness.errors import UsageError

REQUIRED = {"laptop-cpu", "cuda-gpu", "jetson-orin-nano-8gb", "jetson-agx-orin", "raspberry-pi-5"}


def host(**kw) -> HostInfo:  # type: ignore[no-untyped-def]
    base = dict(cpu_model="x", physical_cores=2, logical_cores=2, ram_bytes=16 * 2**30, machine="x86_64",
                system="Linux", gpus=[], jetson_release=None, board_model=None)
    base.update(kw)
    return HostInfo(**base)


def test_shipped_profiles_load_with_every_field() -> None:
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for p in profiles.values():
        assert p.memory_budget_bytes > 0 and p.n_ctx >= 512 and p.onnx_providers
        assert p.peak_bandwidth_gbps and p.peak_bandwidth_gbps > 1
    assert profiles["cuda-gpu"].n_gpu_layers == -1
    assert profiles["cuda-gpu"].onnx_providers[0] == "CUDAExecutionProvider"


@pytest.mark.parametrize("text,expected", [("4GB", 4_000_000_000), ("512MiB", 512 * 2**20), ("8 GiB", 8 * 2**30),
                                           ("1.5G", 1_500_000_000), ("1000", 1000)])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="write it like 4GB"):
        parse_size("four gigs")


def test_detect_picks_cpu_profile_without_gpu() -> None:
    p, why = closest_profile(host())
    assert p.kind == "cpu" and "CPU only" in why
    assert p.name == "laptop-cpu"
    big, _ = closest_profile(host(physical_cores=12))
    assert big.name == "server-cpu"


def test_detect_jetson_by_board_and_by_release() -> None:
    p, why = closest_profile(host(board_model="NVIDIA Jetson Orin Nano Developer Kit", machine="aarch64"))
    assert p.name == "jetson-orin-nano-8gb" and "board model" in why
    p, _ = closest_profile(host(board_model="Jetson AGX Orin", ram_bytes=64 * 10**9))
    assert p.name == "jetson-agx-orin"
    p, why = closest_profile(host(jetson_release="# R36 (release), REVISION: 3.0", ram_bytes=62 * 10**9))
    assert p.name == "jetson-agx-orin" and "Jetson" in why


def test_detect_nvidia_gpu_and_pi() -> None:
    p, _ = closest_profile(host(gpus=[{"index": 0, "name": "NVIDIA GeForce RTX 3090", "memory_bytes": 24 * 2**30}]))
    assert p.kind == "cuda"
    p, _ = closest_profile(host(board_model="Raspberry Pi 5 Model B Rev 1.0", physical_cores=4))
    assert p.name == "raspberry-pi-5"


def test_jetson_release_file(tmp_path: Path) -> None:
    assert jetson_release(tmp_path) is None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R35 (release), REVISION: 4.1, GCID: 33958178\n")
    assert jetson_release(tmp_path).startswith("# R35")


def test_user_catalog_shadows_and_extends(tmp_path: Path) -> None:
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "my-box.toml").write_text('description = "mine"\nthreads = 3\nmemory_budget = "1GB"\n')
    with catalog.user_dirs([tmp_path]):
        p = load_profile("my-box")
        assert p.threads == 3 and p.memory_budget_bytes == 10**9 and p.resolved_threads() == 3
    with pytest.raises(UsageError, match="unknown device 'my-box'"):
        load_profile("my-box")


def test_bad_profile_fields(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('threads = 2\nturbo = true\n')
    with pytest.raises(UsageError, match="unknown fields"):
        load_profile(str(f))
    f.write_text('threads = [\n')
    with pytest.raises(UsageError, match="not valid TOML"):
        load_profile(str(f))


def test_devices_cli(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("devices", "list")
    assert r.code == 0 and "jetson-orin-nano-8gb" in r.out
    r = cli("devices", "show", "raspberry-pi-5", "--json")
    assert r.code == 0 and '"threads": 4' in r.out
    r = cli("devices", "detect", "--json")
    assert r.code == 0 and '"profile"' in r.out
    r = cli("devices", "show", "no-such-device")
    assert r.code == 2 and "unknown device 'no-such-device'" in r.err and "harness devices list" in r.err
