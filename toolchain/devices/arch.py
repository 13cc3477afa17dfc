"""CPU architecture names: what a device reports (``uname -m`` over SSH, the
``ro.product.cpu.abi``/``abilist`` properties or ``uname -m`` over ADB) against what a target
profile declares (``[cpu] abi``), so that a benchmark never runs on one architecture and is
reported under a target of another.

Every spelling is mapped to one canonical name (:data:`CANONICAL`): ``aarch64`` (``arm64``,
``arm64-v8a``, ``armv8``), ``armv7`` (``armv7l``, ``armeabi-v7a``, ``armv8l``, ``armhf``),
``armv6`` (``armv6l``, ``armeabi``), ``x86_64`` (``amd64``), ``x86`` (``i386``..``i686``),
``riscv64``. Unknown names are kept, lower-cased.

Public API (stable; other commands reuse it):

* :func:`canonical_arch` — one reported name → canonical name;
* :func:`target_arch` — a target profile's canonical architecture, or None when it declares none;
* :func:`check_device_arch` — raise :class:`~toolchain.errors.ArchMismatchError` (with the
  matching targets and the override flag in its hint) unless the device can run the target's
  architecture; returns the device's canonical architecture;
* :func:`targets_for_arch` — names of the Linux/Android profiles of an architecture.

Signatures: ``canonical_arch(reported: str) -> str``; ``target_arch(target) -> str | None``;
``check_device_arch(target, reported: str | Sequence[str], *, device: str,
allow_mismatch: bool = False) -> str``; ``targets_for_arch(arch: str, kind: str | None = None)
-> list[str]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from toolchain.errors import ArchMismatchError, EdgeDeployError
from toolchain.targets import Target, available_names, load_target

log = logging.getLogger(__name__)

#: reported spelling → canonical name
ALIASES: dict[str, str] = {
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "arm64-v8a": "aarch64",
    "armv8": "aarch64",
    "armv8-a": "aarch64",
    "armv7": "armv7",
    "armv7l": "armv7",
    "armv7a": "armv7",
    "armeabi-v7a": "armv7",
    "armv8l": "armv7",  # a 32-bit userland on a 64-bit ARM CPU
    "armhf": "armv7",
    "arm": "armv7",
    "armv6": "armv6",
    "armv6l": "armv6",
    "armeabi": "armv6",
    "armel": "armv6",
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "x64": "x86_64",
    "x86": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "riscv64": "riscv64",
}
CANONICAL = tuple(sorted(set(ALIASES.values())))
#: flag that skips the check (documented in docs/bench-linux.md and docs/bench-android.md)
OVERRIDE_FLAG = "--allow-arch-mismatch"


def canonical_arch(reported: str) -> str:
    """``arm64-v8a`` / ``aarch64`` / ``arm64`` → ``aarch64`` and so on (see the module
    docstring); an unknown name comes back stripped and lower-cased."""
    name = reported.strip().lower()
    return ALIASES.get(name, name)


def target_arch(target: Target) -> str | None:
    """The canonical architecture of ``target`` (its ``[cpu] abi``), or None without one
    (microcontroller profiles)."""
    return canonical_arch(target.cpu.abi) if target.cpu.abi else None


def targets_for_arch(arch: str, kind: str | None = None) -> list[str]:
    """Names of the Linux and Android profiles (only those of ``kind`` when given: ``linux``
    or ``android``) whose architecture is ``arch``; profiles that fail to load are skipped."""
    out = []
    for name in available_names():
        try:
            t = load_target(name)
        except EdgeDeployError:
            continue
        if kind is not None and t.kind != kind:
            continue
        if t.kind in ("linux", "android") and target_arch(t) == canonical_arch(arch):
            out.append(name)
    return out


def check_device_arch(
    target: Target,
    reported: str | Sequence[str],
    *,
    device: str,
    allow_mismatch: bool = False,
) -> str:
    """Check that ``device`` (a description such as ``ssh pi@10.0.0.2:22``) can run
    ``target``'s architecture.

    ``reported`` is what the device says: ``uname -m`` (one string), or an Android ABI list
    (every ABI the device runs, primary first). Returns the device's canonical architecture
    (the first one reported). Raises :class:`ArchMismatchError` before anything runs when none
    of the reported architectures is the target's, unless ``allow_mismatch`` is set (then the
    mismatch is logged as a warning). A target without an architecture, or a device that
    reported nothing, is not checked.
    """
    names = [reported] if isinstance(reported, str) else list(reported)
    archs = [canonical_arch(n) for n in names if n.strip()]
    want = target_arch(target)
    if not archs:
        log.warning("%s did not report its CPU architecture; not checked", device)
        return ""
    if want is None or want in archs:
        return archs[0]
    said = ", ".join(dict.fromkeys(n.strip() for n in names if n.strip()))
    message = (
        f"target {target.name} is {want} but {device} reports {said}: the benchmark would run "
        f"on another architecture than the target's and be reported under its name"
    )
    if allow_mismatch:
        log.warning("%s (allowed by %s)", message, OVERRIDE_FLAG)
        return archs[0]
    matching = targets_for_arch(
        archs[0], target.kind if target.kind in ("linux", "android") else None
    )
    pick = (
        f"pick a target that matches, e.g. --target {' / '.join(matching[:3])}"
        if matching
        else f"pick or write a target profile with [cpu] abi = {archs[0]!r}"
    )
    raise ArchMismatchError(message, hint=f"{pick}, or pass {OVERRIDE_FLAG} to run anyway")


def mismatch_warning(arch: str, target: Target, device: str) -> str | None:
    """The report warning for a run on another architecture than ``target``'s (one that
    :func:`check_device_arch` let through with ``allow_mismatch``), else None. ``device`` is
    the noun for it (``board``, ``device``)."""
    want = target_arch(target)
    if arch and want and arch != want:
        return (
            f"the {device} is {arch}, not {want} like target {target.name} "
            f"({OVERRIDE_FLAG}): these numbers are not the target's"
        )
    return None
