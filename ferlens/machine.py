"""What this machine's CPU can do: training precision and the live page's model format depend on it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's instruction-set flags from /proc/cpuinfo (x86 "flags", ARM "Features"), or None when
    it cannot say (not Linux, or no such line). `cpuinfo` is the file's text, for tests."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_model_name() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo, or None."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), None)


def vector_extensions(flags: frozenset[str] | None = None) -> str | None:
    """The widest vector instructions the CPU has: training and inference speed differ widely between them
    (compare benchmarks/results.md, AVX2, with benchmarks/results-avx512.md)."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flags and flag in flags:
            return name
    return None


def machine_summary() -> str:
    """Cores, CPU name and widest vector instructions, as every timing should name them."""
    vector = vector_extensions()
    return f"{os.cpu_count()} x {cpu_model_name() or platform.processor() or platform.machine()}" + (
        f" ({vector})" if vector else "")


#: CPU flags that give bfloat16 arithmetic in hardware; without them TensorFlow emulates it.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: CPU flags for 8-bit dot products (x86 VNNI and AMX, ARM dot product and i8mm). Without them an
#: INT8 TFLite model is no faster than the float one: on an AVX2-only EPYC the live model took as long a
#: face in INT8 as in float32 (benchmarks/results.md), and INT8 is a little less accurate (metrics.json).
INT8_DOT_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def has_any(wanted: tuple[str, ...], cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU has any of the `wanted` flags; None when its flags cannot be read."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else any(flag in flags for flag in wanted)
