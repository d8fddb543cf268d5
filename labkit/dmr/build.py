"""Is the installed llama.cpp portable? The build flags, and the check of what was compiled in.

A llama.cpp compiled with its native CPU detection uses every instruction the build machine
advertises (AVX-512, AMX tiles). Such a library crashes with SIGSEGV/SIGILL on a CPU that lacks
them, or that advertises them without allowing them (AMX under some hypervisors), and pip's
wheel cache or a Binder image carries it to other CPUs. So labkit builds llama-cpp-python for a
baseline every course machine has: x86-64 with AVX2 (Haswell, 2013, and later), or plain armv8
on arm64; and checks the compiled-in feature list that ``llama_print_system_info()`` reports.

Standard library only: ``scripts/llama-build.sh`` runs this file before labkit is installed.

    python labkit/dmr/build.py cmake-args   # the CMAKE_ARGS for this architecture
    python labkit/dmr/build.py check        # exit 0 portable, 1 not portable, 2 not installed
    python -m labkit.dmr.build probe GGUF   # one real token (labkit doctor runs it in a subprocess)
"""

from __future__ import annotations

import platform
import sys
import time

# Built for every machine of one architecture. LLAVA_BUILD=OFF: labkit does not use the
# multimodal library (mtmd), and skipping it shortens the build.
_COMMON = ["-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
           "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF"]
_X86_64 = ["-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON",
           "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF", "-DGGML_AVX512_VNNI=OFF",
           "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
_ARM64 = ["-DGGML_CPU_ARM_ARCH=armv8-a"]

# Compiled-in features a course machine may lack (names as ggml-cpu reports them). On x86-64:
# beyond AVX2. On arm64: beyond armv8.0 (NEON and FMA are baseline there).
NOT_PORTABLE = frozenset({
    "AVX_VNNI", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8",
    "SVE", "SME", "SME2", "MATMUL_INT8", "DOTPROD", "FP16_VA",
})


def cmake_args(machine: str | None = None) -> str:
    """The CMAKE_ARGS for a portable build on ``machine`` (default: this one's `uname -m`)."""
    machine = (machine or platform.machine()).lower()
    extra = _X86_64 if machine in {"x86_64", "amd64"} else _ARM64 if machine in {"aarch64", "arm64"} else []
    return " ".join(_COMMON + extra)


def features(system_info: str) -> dict[str, str]:
    """``"CPU : AVX = 1 | AVX2 = 1 | …"`` → ``{"AVX": "1", "AVX2": "1", …}`` (every backend's)."""
    found: dict[str, str] = {}
    for part in system_info.replace("\n", "|").split("|"):
        name, sep, value = part.partition("=")
        if sep:
            found[name.split(":")[-1].strip()] = value.strip()
    return found


def unportable(system_info: str) -> list[str]:
    """The compiled-in features of ``system_info`` that some course machine lacks, sorted."""
    return sorted(name for name, value in features(system_info).items()
                  if name in NOT_PORTABLE and value not in {"", "0"})


def installed_system_info() -> str | None:
    """The installed llama-cpp-python's feature list, or None when it is not importable."""
    try:
        import llama_cpp
    except Exception:  # ImportError, or a library that fails to load (OSError)
        return None
    info = llama_cpp.llama_print_system_info()
    return info.decode() if isinstance(info, bytes) else str(info)


def probe(model_path: str) -> int:
    """Load ``model_path`` and generate one token; print the features first, in case that crashes.

    Output lines: ``features: …``, then ``ok VERSION SECONDS``. A build that uses instructions
    this CPU cannot run dies here with a signal, which ``labkit doctor`` reports.
    """
    info = installed_system_info()
    if info is None:
        print("llama-cpp-python is not installed")
        return 2
    print(f"features: {info.strip()}", flush=True)
    import llama_cpp

    t0 = time.monotonic()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, n_threads=1, verbose=False)
    llm.create_completion("Hello", max_tokens=1, temperature=0)
    print(f"ok {llama_cpp.__version__} {time.monotonic() - t0:.2f}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["cmake-args"]:
        print(cmake_args())
        return 0
    if argv[:1] == ["check"]:
        info = installed_system_info()
        if info is None:
            print("llama-cpp-python is not installed")
            return 2
        bad = unportable(info)
        print(f"llama.cpp features: {info.strip()}")
        if bad:
            print(f"not portable: compiled with {', '.join(bad)}")
            return 1
        return 0
    if argv[:1] == ["probe"] and len(argv) == 2:
        return probe(argv[1])
    print("usage: build.py cmake-args | check | probe GGUF", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
