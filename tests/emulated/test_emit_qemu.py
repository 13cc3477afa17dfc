"""Emulated tier: the emitted arrays on a (QEMU) Cortex-M4, no TFLM needed.

The model and golden sources of ``edgedeploy emit`` are cross-compiled with
arm-none-eabi-g++ into a minimal bare-metal program for mps2-an386 with the model array in
its own linker section; in QEMU the program checks that the array sits in that section at a
16-byte aligned address and that its FNV-1a hash, its size and the golden vectors' hash are
those of the host's bytes, then exits through semihosting with the result."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.emit_cxx import compile_cxx
from toolchain.emit import emit
from toolchain.emit.lean import lean_model
from toolchain.targets import load_target
from toolchain.tflite_model import TFLiteModel

pytestmark = [
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None,
        reason="needs qemu-system-arm (scripts/install-system-deps.sh)",
    ),
    pytest.mark.skipif(
        shutil.which("arm-none-eabi-g++") is None,
        reason="needs arm-none-eabi-g++ (scripts/install-system-deps.sh)",
    ),
]

LINKER = """
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M }
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH
  .model_flash : ALIGN(4) { __model_start = .; KEEP(*(.model_flash)) __model_end = .; } > FLASH
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}
"""

CHECK = r"""
#include <cstdint>
#include "m_model_data.h"
#include "m_golden.h"
extern "C" {
extern unsigned char __stack_top, __model_start, __model_end;
static void semihost_exit(int code) {
  volatile uint32_t block[2] = {0x20026u, static_cast<uint32_t>(code)};  // ApplicationExit
  register uint32_t r0 __asm__("r0") = 0x20;                              // SYS_EXIT_EXTENDED
  register const volatile uint32_t* r1 __asm__("r1") = block;
  __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {}
}
static uint32_t fnv(const unsigned char* p, uint32_t n) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}
void reset_handler(void) {
  const unsigned char* m = nn::g_m_model_data;
  int code = 0;
  if (reinterpret_cast<uintptr_t>(m) % 16 != 0) code |= 1;
  if (m < &__model_start || m + nn::g_m_model_data_size > &__model_end) code |= 2;
  if (nn::g_m_model_data_size != MODEL_SIZE) code |= 4;
  if (fnv(m, nn::g_m_model_data_size) != MODEL_FNV) code |= 8;
  const unsigned char* g = reinterpret_cast<const unsigned char*>(nn::g_m_golden_output0);
  if (fnv(g, sizeof(nn::g_m_golden_output0)) != GOLDEN_FNV) code |= 16;
  if (nn::kMTensorArenaSize < nn::kMTensorArenaMinSize || nn::kMTensorArenaSize % 16) code |= 32;
  semihost_exit(code);
}
__attribute__((section(".vectors"), used)) void* const vectors[2] = {&__stack_top,
                                                                     (void*)reset_handler};
}
"""


def _fnv(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def test_emitted_arrays_are_intact_on_a_cortex_m4(reference_dir: Path, tmp_path: Path) -> None:
    model = reference_dir / "tflm_models/micro_speech/micro_speech_quantized.tflite"
    out = tmp_path / "emit"
    r = emit(
        model, out_dir=out, name="m", namespace="nn", section=".model_flash", target="mps2-an386"
    )
    assert r.golden is not None and r.lean is not None  # lean by default for an MCU target
    data = lean_model(TFLiteModel.from_file(model)).data  # what the array must hold
    assert len(data) == r.lean.bytes_after < model.stat().st_size
    golden_out = np.ascontiguousarray(r.golden.outputs[0]).tobytes()
    (tmp_path / "link.ld").write_text(LINKER)
    (tmp_path / "check.cc").write_text(CHECK)
    flags = [
        *load_target("mps2-an386").cpu.gcc_flags(),
        "-Os", "-ffreestanding", "-nostdlib", "-nostartfiles", "-fno-exceptions", "-fno-rtti",
        f"-I{out}", f"-T{tmp_path / 'link.ld'}", "-Wno-pedantic",
        f"-DMODEL_SIZE={len(data)}u", f"-DMODEL_FNV={_fnv(data)}u", f"-DGOLDEN_FNV={_fnv(golden_out)}u",
    ]  # fmt: skip
    elf = compile_cxx(
        "arm-none-eabi-g++",
        tmp_path / "check.elf",
        [tmp_path / "check.cc", out / "m_model_data.cc", out / "m_golden.cc"],
        *flags,
    )
    proc = subprocess.run(
        ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
         "-serial", "null", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, f"check bits {proc.returncode:#x}: {proc.stderr[-500:]}"
