"""What CPU this process runs on: the facts every benchmark prints and Home shows.

The same code runs at very different speeds on different CPUs. The largest difference for this
lab is bfloat16: a CPU with bfloat16 instructions (Intel's AVX-512 BF16 or AMX, ARM's BF16)
multiplies bfloat16 matrices at about twice the float32 rate, while a CPU without them (AVX2
only, as on many laptops and servers) converts every number to float32 and back, which can make
a batch of 16 rows several times slower than plain float32.

>>> facts = cpu_facts()
>>> facts.cores >= 1
True
>>> sorted(parse_flags("flags : fpu sse avx2 avx512f avx512_bf16"))
['avx2', 'avx512_bf16', 'avx512f', 'fpu', 'sse']
>>> has_native_bfloat16(frozenset({"avx2", "fma"}), "x86_64")
False
>>> has_native_bfloat16(frozenset({"avx512f", "amx_bf16"}), "x86_64")
True
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llmlab.compute import usable_cores

# The x86 flags of bfloat16 arithmetic in hardware (Linux's names in /proc/cpuinfo), and ARM's.
X86_BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ARM_BFLOAT16_FLAGS = frozenset({"bf16"})
# PyTorch's name for the widest vector instructions its kernels use -> their width in bits.
VECTOR_BITS = {"AVX512": 512, "AVX2": 256, "SVE256": 256, "DEFAULT": 128, "ZVECTOR": 128}


@dataclass(frozen=True)
class CpuFacts:
    """One CPU, as a benchmark table or Home names it."""

    model: str  # "AMD EPYC", "Intel(R) Xeon(R) Platinum 8488C", "Apple M2"
    machine: str  # "x86_64", "aarch64", "arm64"
    cores: int  # the cores this process may use
    vector: str  # PyTorch's kernel level: "AVX2", "AVX512", "DEFAULT" (ARM NEON) ...
    vector_bits: int  # its width in bits (AVX2: 256, AVX-512: 512)
    native_bfloat16: bool  # bfloat16 multiply instructions in hardware
    onednn_bfloat16: bool  # oneDNN runs bfloat16 kernels (with AVX-512 it emulates some)
    torch_version: str
    transformers_version: str

    @property
    def bfloat16_text(self) -> str:
        return "native bfloat16" if self.native_bfloat16 else "no native bfloat16"

    def summary(self) -> str:
        """One line: model, cores, vector width, bfloat16.

        >>> CpuFacts("AMD EPYC", "x86_64", 2, "AVX2", 256, False, False, "2.13.0", "5.23.0").summary()
        'AMD EPYC · 2 cores · AVX2 (256-bit vectors) · no native bfloat16'
        """
        cores = f"{self.cores} core" + ("s" if self.cores != 1 else "")
        vector = f"{self.vector} ({self.vector_bits}-bit vectors)"
        return f"{self.model} · {cores} · {vector} · {self.bfloat16_text}"

    def header(self) -> str:
        """The lines every benchmark prints first."""
        return "\n".join(
            [
                f"CPU: {self.model} ({self.machine}), {self.cores} usable cores",
                f"vector width: {self.vector} ({self.vector_bits}-bit); "
                f"{self.bfloat16_text} (oneDNN bfloat16 kernels: "
                f"{'yes' if self.onednn_bfloat16 else 'no'})",
                f"torch {self.torch_version}, transformers {self.transformers_version}"
                + _limits_note(),
            ]
        )


def _limits_note() -> str:
    """Environment settings that narrow PyTorch's or oneDNN's instructions, when set."""
    notes = [
        f"{name}={os.environ[name]}"
        for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
        if os.environ.get(name)
    ]
    return f"; limited by {', '.join(notes)}" if notes else ""


def parse_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo's text (x86 `flags`, ARM
    `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def parse_model(cpuinfo: str) -> str:
    """The CPU's name in /proc/cpuinfo's text ('' when it has none, as on some ARM boards)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
            return value.strip()
    return ""


def has_native_bfloat16(flags: frozenset[str], machine: str) -> bool:
    """Whether the CPU multiplies bfloat16 numbers in hardware, from its flags."""
    if machine.lower() in ("aarch64", "arm64"):
        return bool(flags & ARM_BFLOAT16_FLAGS)
    return bool(flags & X86_BFLOAT16_FLAGS)


def _mac_sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


@functools.cache
def cpu_facts() -> CpuFacts:
    """This machine's CPU, read once per process."""
    import torch
    import transformers

    machine = platform.machine()
    cpuinfo_path = Path("/proc/cpuinfo")
    cpuinfo = cpuinfo_path.read_text(errors="replace") if cpuinfo_path.exists() else ""
    flags = parse_flags(cpuinfo)
    model = parse_model(cpuinfo)
    native = has_native_bfloat16(flags, machine)
    if platform.system() == "Darwin":  # no /proc: ask the kernel
        model = _mac_sysctl("machdep.cpu.brand_string") or model
        native = _mac_sysctl("hw.optional.arm.FEAT_BF16") == "1"
    vector = torch.backends.cpu.get_cpu_capability()
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    return CpuFacts(
        model=model or platform.processor() or machine or "unknown CPU",
        machine=machine,
        cores=usable_cores(),
        vector=vector,
        vector_bits=VECTOR_BITS.get(vector, 128),
        native_bfloat16=native,
        onednn_bfloat16=onednn,
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
    )


def print_header() -> None:
    """Print the CPU's facts (the first lines of every benchmark's output)."""
    print(cpu_facts().header(), flush=True)
