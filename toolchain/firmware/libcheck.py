"""Does a TFLM static library fit a target? Read from the library itself, before linking.

A TFLM library built for another CPU links fine far too often and then faults on the board
(QEMU enforces the ISA too: an M4 CMSIS-NN library faults on the M3 of lm3s6965evb), or fails
at link time with a cryptic "uses VFP register arguments" message. So every member object's
Arm build attributes (``arm-none-eabi-readelf -h -A``: ``Tag_CPU_arch``,
``Tag_CPU_arch_profile``, ``Tag_FP_arch``, ``Tag_ABI_HardFP_use``, ``Tag_ABI_VFP_args``,
``Tag_DSP_extension``) are compared with the target's CPU:

* every member is an Arm (``Machine: ARM``) M-profile object;
* no member needs a newer architecture than the target's core (v6-M < v7-M < v7E-M < v8-M
  Mainline < v8.1-M Mainline; v8-M Baseline runs on v8-M Mainline and later);
* the float ABI matches: a hard-float target needs every member built with
  ``-mfloat-abi=hard`` (VFP register arguments) and a soft/softfp target needs none;
* FPU instructions only where the target has an FPU, and of a kind it has (FPv5 needs an
  FPv5 unit; double precision needs a double-precision unit);
* the DSP extension of Armv8-M only where the target has it.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from toolchain.errors import InputFileError, LibraryMismatchError
from toolchain.firmware.build import require_tool
from toolchain.fsutil import sha256_file
from toolchain.targets import Target

log = logging.getLogger(__name__)

READELF = "arm-none-eabi-readelf"

#: Tag_CPU_arch of each Cortex-M core as GCC builds it.
CORE_ARCH = {
    "cortex-m0": "v6S-M",
    "cortex-m0plus": "v6S-M",
    "cortex-m3": "v7",
    "cortex-m4": "v7E-M",
    "cortex-m7": "v7E-M",
    "cortex-m33": "v8-M.mainline",
    "cortex-m55": "v8.1-M.mainline",
}
_ARCH_RANK = {
    "v6-M": 0,
    "v6S-M": 0,
    "v8-M.baseline": 1,
    "v7": 2,
    "v7E-M": 3,
    "v8-M.mainline": 4,
    "v8.1-M.mainline": 5,
}
#: Tag_FP_arch values: 1 = VFPv4-class, 2 = FPv5 (Armv8) class.
_FP_RANK = {"VFPv4-D16": 1, "VFPv4": 1, "FPv4-SP": 1, "FPv5/FP-D16 for ARMv8": 2}
_TARGET_FP = {  # target fpu → (rank, double precision)
    "fpv4-sp-d16": (1, False),
    "fpv5-sp-d16": (2, False),
    "fpv5-d16": (2, True),
}
#: TFLM's TARGET_ARCH for a target (cortex_m_generic), and FPU= where TFLM's default differs.
_TFLM_ARCH = {
    ("cortex-m4", "hard"): "cortex-m4+fp",
    ("cortex-m4", "softfp"): "cortex-m4+sfp",
    ("cortex-m7", "hard"): "cortex-m7+fp",
}


@dataclass(frozen=True)
class MemberAttributes:
    """The build attributes of one object file in the archive (None: tag absent)."""

    member: str
    machine: str | None
    cpu_arch: str | None
    profile: str | None
    fp_arch: str | None
    hardfp_use: str | None
    vfp_args: str | None
    dsp: str | None

    @property
    def hard_float(self) -> bool:
        return self.vfp_args == "VFP registers"

    @property
    def double_precision(self) -> bool:
        return self.fp_arch is not None and self.hardfp_use != "SP only"


@dataclass(frozen=True)
class LibraryCheck:
    """What a TFLM library was built for, and whether that fits ``target``."""

    path: Path
    target: str
    members: int
    arch: str
    float_abi: str  # "hard" or "soft/softfp"
    fp_arch: str | None
    cmsis_nn: bool
    sha256: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """One line for the HELLO text and the CLI: what the library is."""
        fp = f", {self.fp_arch}" if self.fp_arch else ", no FPU code"
        kernels = "CMSIS-NN" if self.cmsis_nn else "reference"
        return (
            f"{self.path.name} {self.arch} {self.float_abi}-float{fp}, {kernels} kernels, "
            f"{self.members} objects, sha256 {self.sha256[:16]}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "target": self.target,
            "members": self.members,
            "arch": self.arch,
            "float_abi": self.float_abi,
            "fp_arch": self.fp_arch,
            "cmsis_nn": self.cmsis_nn,
            "sha256": self.sha256,
            "ok": self.ok,
            "problems": list(self.problems),
        }


def tflm_build_hint(target: Target) -> str:
    """The TFLM ``make`` options that build a matching library for ``target``."""
    core, abi = target.cpu.core, target.cpu.float_abi
    arch = _TFLM_ARCH.get((core, abi), core)
    opts = f"TARGET=cortex_m_generic TARGET_ARCH={arch}"
    if core == "cortex-m7" and abi == "hard" and target.cpu.fpu != "fpv5-d16":
        opts += f" FPU={target.cpu.fpu}"
    return (
        f"rebuild it with TFLM's Makefile: make -f tensorflow/lite/micro/tools/make/Makefile "
        f"{opts} TARGET_TOOLCHAIN_ROOT=/usr/bin/ BUILD_TYPE=release_with_logs "
        "[OPTIMIZED_KERNEL_DIR=cmsis_nn] microlite "
        "(docs/tflm-library.md)"
    )


def read_attributes(lib: Path) -> list[MemberAttributes]:
    """The build attributes of every object in the archive ``lib``.

    Raises :class:`InputFileError` (no such file, not an archive of ELF objects) and
    :class:`ToolchainMissingError` (no arm-none-eabi-readelf).
    """
    lib = Path(lib)
    if not lib.is_file():
        raise InputFileError(f"TFLM library {lib}: no such file")
    with lib.open("rb") as fh:
        magic = fh.read(8)
    if magic != b"!<arch>\n":
        raise InputFileError(
            f"TFLM library {lib} is not a static library (.a archive)",
            hint="pass the libtensorflow-microlite.a that TFLM's Makefile wrote under gen/.../lib/",
        )
    exe = require_tool(READELF, "check the TFLM library")
    proc = subprocess.run(
        [exe, "-h", "-A", str(lib)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0 and not proc.stdout:
        raise InputFileError(f"TFLM library {lib}: readelf failed: {proc.stderr.strip()[:300]}")
    return _parse_readelf(proc.stdout)


_FILE_RE = re.compile(r"^File: .*\((?P<member>[^()]*)\)\s*$")
_TAG_RE = re.compile(r"^\s+(Tag_\w+): (.*)$")
_MACHINE_RE = re.compile(r"^\s+Machine:\s+(.*)$")


def _parse_readelf(text: str) -> list[MemberAttributes]:
    out: list[MemberAttributes] = []
    member: str | None = None
    tags: dict[str, str] = {}
    machine: str | None = None

    def flush() -> None:
        if member is not None:
            out.append(
                MemberAttributes(
                    member=member,
                    machine=machine,
                    cpu_arch=tags.get("Tag_CPU_arch"),
                    profile=tags.get("Tag_CPU_arch_profile"),
                    fp_arch=tags.get("Tag_FP_arch"),
                    hardfp_use=tags.get("Tag_ABI_HardFP_use"),
                    vfp_args=tags.get("Tag_ABI_VFP_args"),
                    dsp=tags.get("Tag_DSP_extension"),
                )
            )

    for line in text.splitlines():
        m = _FILE_RE.match(line)
        if m:
            flush()
            member, tags, machine = m.group("member"), {}, None
            continue
        m = _MACHINE_RE.match(line)
        if m:
            machine = m.group(1).strip()
            continue
        m = _TAG_RE.match(line)
        if m:
            tags.setdefault(m.group(1), m.group(2).strip())
    flush()
    return out


def check_library(lib: Path, target: Target) -> LibraryCheck:
    """Compare ``lib``'s objects with ``target``'s CPU; the result lists every problem found
    (see :func:`require_compatible` for the raising variant)."""
    lib = Path(lib).resolve()
    members = read_attributes(lib)
    if not members:
        raise InputFileError(f"TFLM library {lib} contains no object files")
    problems: list[str] = []
    cpu = target.cpu
    want_arch = CORE_ARCH.get(cpu.core)
    if want_arch is None:
        raise LibraryMismatchError(
            f"target {target.name} ({cpu.core}) is not a Cortex-M core; "
            "a TFLM firmware library cannot be checked against it"
        )

    def examples(bad: list[MemberAttributes]) -> str:
        names = ", ".join(m.member for m in bad[:3])
        return f"{len(bad)} of {len(members)} objects, e.g. {names}"

    not_arm = [m for m in members if m.machine is not None and m.machine != "ARM"]
    if not_arm:
        problems.append(
            f"not Arm code: built for {not_arm[0].machine} ({examples(not_arm)}); "
            "the library must be cross-compiled with arm-none-eabi-gcc"
        )
    arm = [m for m in members if m not in not_arm]
    not_m = [m for m in arm if m.profile is not None and m.profile != "Microcontroller"]
    if not_m:
        problems.append(
            f"built for the {not_m[0].profile} profile, not Microcontroller (M-profile) "
            f"({examples(not_m)})"
        )
    rank = _ARCH_RANK[want_arch]
    too_new = [m for m in arm if m.cpu_arch is not None and _ARCH_RANK.get(m.cpu_arch, 99) > rank]
    # v8-M Baseline (M23) code does not run on v7-M cores (ranked below them but not a subset).
    if want_arch in ("v7", "v7E-M"):
        too_new += [m for m in arm if m.cpu_arch == "v8-M.baseline"]
    if too_new:
        problems.append(
            f"needs {too_new[0].cpu_arch} but {target.name}'s {cpu.core} is {want_arch} "
            f"({examples(too_new)}); that code faults on the target"
        )
    hard = [m for m in arm if m.hard_float]
    if cpu.float_abi == "hard":
        soft = [m for m in arm if not m.hard_float and m.vfp_args != "compatible"]
        if soft:
            problems.append(
                f"float ABI: built with -mfloat-abi=soft/softfp ({examples(soft)}) but "
                f"{target.name} uses -mfloat-abi=hard; the objects cannot be linked together"
            )
    elif hard:
        problems.append(
            f"float ABI: built with -mfloat-abi=hard ({examples(hard)}) but {target.name} "
            f"uses -mfloat-abi={cpu.float_abi}"
        )
    fp_users = [m for m in arm if m.fp_arch is not None]
    if fp_users:
        if cpu.fpu == "none":
            problems.append(
                f"uses FPU instructions ({fp_users[0].fp_arch}; {examples(fp_users)}) but "
                f"{target.name}'s {cpu.core} has no FPU"
            )
        elif cpu.fpu in _TARGET_FP:
            t_rank, t_double = _TARGET_FP[cpu.fpu]
            newer = [m for m in fp_users if _FP_RANK.get(m.fp_arch or "", 9) > t_rank]
            if newer:
                problems.append(
                    f"uses {newer[0].fp_arch} instructions but {target.name}'s FPU is "
                    f"{cpu.fpu} ({examples(newer)})"
                )
            double = [m for m in fp_users if m.double_precision]
            if double and not t_double:
                problems.append(
                    f"uses double-precision FPU instructions but {target.name}'s FPU "
                    f"({cpu.fpu}) is single-precision ({examples(double)})"
                )
    if not cpu.dsp and want_arch.startswith("v8"):
        dsp = [m for m in arm if m.dsp == "Allowed"]
        if dsp:
            problems.append(f"uses the DSP extension, which {target.name} lacks ({examples(dsp)})")

    arch_counts = Counter(m.cpu_arch or "?" for m in arm)
    arch = max(arch_counts, key=lambda a: (_ARCH_RANK.get(a, -1), arch_counts[a])) if arm else "?"
    fp = Counter(m.fp_arch for m in fp_users).most_common(1)[0][0] if fp_users else None
    cmsis_nn = any(m.member.startswith("arm_") and "_s8" in m.member for m in members)
    return LibraryCheck(
        path=lib,
        target=target.name,
        members=len(members),
        arch=arch,
        float_abi="hard" if hard and len(hard) * 2 >= len(arm) else "soft/softfp",
        fp_arch=fp,
        cmsis_nn=cmsis_nn,
        sha256=sha256_file(lib),
        problems=tuple(problems),
    )


def require_compatible(lib: Path, target: Target) -> LibraryCheck:
    """:func:`check_library`, raising :class:`LibraryMismatchError` (every problem listed,
    with the TFLM make options that build a matching library) when it does not fit."""
    result = check_library(lib, target)
    if not result.ok:
        lines = "\n  - ".join(result.problems)
        raise LibraryMismatchError(
            f"TFLM library {result.path} does not match target {target.name} "
            f"({' '.join(target.cpu.gcc_flags())}):\n  - {lines}",
            hint=tflm_build_hint(target),
        )
    log.info("TFLM library %s fits %s", result.describe(), target.name)
    return result
