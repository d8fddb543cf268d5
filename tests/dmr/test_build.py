"""The installed llama.cpp runs on every course machine: no AMX, no AVX-512, nothing native-only.

A library compiled with llama.cpp's native CPU detection crashed the whole course on a Xeon
that advertises AMX (SIGSEGV at the first inference). The set-up builds it portably; these
tests read what the installed library says it was compiled with.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.dmr import build

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[2]
NATIVE_ON_A_XEON = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | "
                    "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
                    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |")
PORTABLE = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | OPENMP = 1 |"


def test_the_check_tells_a_native_build_from_a_portable_one() -> None:
    assert build.unportable(NATIVE_ON_A_XEON) == ["AMX_INT8", "AVX512", "AVX512_BF16", "AVX512_VBMI",
                                                  "AVX512_VNNI", "AVX_VNNI"]
    assert build.unportable(PORTABLE) == []
    assert build.unportable("CPU : NEON = 1 | ARM_FMA = 1 | SVE = 1 | SVE_CNT = 16 | DOTPROD = 1 |") == \
        ["DOTPROD", "SVE"]
    assert build.unportable("CPU : NEON = 1 | ARM_FMA = 1 | OPENMP = 1 |") == []


def test_cmake_args_turn_native_detection_off_on_both_architectures() -> None:
    x86 = build.cmake_args("x86_64").split()
    assert "-DGGML_NATIVE=OFF" in x86 and "-DGGML_AVX2=ON" in x86 and "-DLLAVA_BUILD=OFF" in x86
    assert not [a for a in x86 if ("AMX" in a or "AVX512" in a or "VNNI" in a) and not a.endswith("=OFF")]
    arm = build.cmake_args("aarch64").split()
    assert "-DGGML_NATIVE=OFF" in arm and "-DGGML_CPU_ARM_ARCH=armv8-a" in arm
    assert not [a for a in arm if "AVX" in a]


def test_the_installed_library_is_portable() -> None:
    """What `llama_print_system_info()` reports of the library this course runs."""
    info = build.installed_system_info()
    assert info is not None, "llama-cpp-python is not installed: make test installs it"
    assert build.unportable(info) == [], f"{info}\nrebuild: scripts/llama-build.sh --force .venv/bin/python"
    features = build.features(info)
    if platform.machine() in ("x86_64", "AMD64"):
        assert features.get("AVX2") == "1", info  # the baseline it was built for, really compiled in
    # the same verdict from the command line the set-up uses
    done = subprocess.run([sys.executable, str(ROOT / "labkit" / "dmr" / "build.py"), "check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "llama.cpp features: " in done.stdout, done.stdout + done.stderr


def test_the_probe_answers_one_real_token() -> None:
    from labkit.commands.doctor import shipped_model_file

    path = shipped_model_file()
    assert path is not None
    done = subprocess.run([sys.executable, "-m", "labkit.dmr.build", "probe", str(path)],
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[0].startswith("features: CPU : ") and lines[-1].startswith("ok 0.3.")
