"""Firmware for microcontroller targets: render a Cortex-M project from ``firmware_templates/``,
build it with arm-none-eabi-gcc, check the TFLM library and the image against the target.

The Python API mirrors ``edgedeploy firmware``::

    from toolchain.firmware import make_firmware
    result = make_firmware(target="mps2-an386", model="kws.tflite", out_dir="fw",
                           tflm_lib="libtensorflow-microlite.a", tflm_include=["tflite-micro"],
                           build=True)
    result.build.elf, result.build.memory.flash_used

Modules: :mod:`.render` (project from templates), :mod:`.model` (the emit stage's files),
:mod:`.libcheck` (does a TFLM library fit the CPU), :mod:`.build` (make + image size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolchain.errors import UsageError
from toolchain.firmware.build import FirmwareBuild, MemoryUse, build_project, image_memory
from toolchain.firmware.libcheck import LibraryCheck, check_library, require_compatible
from toolchain.firmware.render import FirmwareProject, read_manifest, render_into
from toolchain.fsutil import check_output_path, staged_outputs
from toolchain.progress import ProgressFn, no_progress
from toolchain.targets import Target, load_target

__all__ = [
    "FirmwareBuild",
    "FirmwareProject",
    "FirmwareResult",
    "LibraryCheck",
    "MemoryUse",
    "build_project",
    "check_library",
    "image_memory",
    "make_firmware",
    "read_manifest",
    "render_project",
    "require_compatible",
]


@dataclass(frozen=True)
class FirmwareResult:
    """A rendered project and, when built, its image."""

    project: FirmwareProject
    build: FirmwareBuild | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": str(self.project.path),
            "target": self.project.target.name,
            "fw": self.project.fw,
            "runtime": (self.project.manifest.get("runtime") or {}).get("name"),
            "compiled": self.project.compiled,
            "files": list(self.project.files),
            "tflm_library": self.project.tflm.check.to_dict() if self.project.tflm else None,
            "build": self.build.to_dict() if self.build else None,
        }


def make_firmware(
    *,
    target: Target | str,
    out_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    selftest: bool = False,
    runtime: str | None = None,
    tflm_lib: str | os.PathLike[str] | None = None,
    tflm_include: Sequence[str | os.PathLike[str]] = (),
    build: bool | Literal["when-possible"] = False,
    jobs: int = 2,
    allow_float: bool = False,
    progress: ProgressFn = no_progress,
    cmsis_nn: str | os.PathLike[str] | None = None,
    cmsis_nn_ops: str = "all",
    patch: str = "auto",
) -> FirmwareResult:
    """Render the firmware project for ``target`` into ``out_dir`` and, with ``build=True``,
    build it (ELF/BIN/HEX under ``build/<fw>/``) and check it against the target's budget.
    ``build="when-possible"`` builds unless the chosen runtime is tflm and no ``tflm_lib`` was
    given: then the project is only rendered (``build`` of the result is None), so that the
    runtime can be chosen here (``runtime=None``) and the manifest's ``runtime.why`` tells the
    real reason (``edgedeploy run``'s firmware stage).

    ``runtime`` is how the model runs (:func:`~toolchain.firmware.render.choose_runtime`):
    ``"compiled"`` (the model as plain C from :func:`toolchain.compile.compile_model`; only
    arm-none-eabi-gcc needed), ``"tflm"`` (the TFLM interpreter), or None: compiled when the
    compiler supports every operator of the model, else tflm. ``patch`` is the compiled
    runtime's split-execution policy (:mod:`toolchain.compile.patch`: auto, on, off). ``cmsis_nn``: the user's
    CMSIS-NN checkout for the compiled runtime (:mod:`toolchain.compile.cmsisnn`); its int8
    sources are then built into the image; ``cmsis_nn_ops`` picks the operators it runs
    (:func:`toolchain.compile.cmsisnn.parse_ops`).

    Render and build happen in a staging directory: when anything fails (bad model,
    unsupported operator, library for the wrong CPU, compile error, image over budget)
    ``out_dir`` is left as it was. Building the TFLM firmware needs ``tflm_lib`` and
    ``tflm_include``; the compiled and self-test firmwares need neither. Raises the errors of
    :func:`~toolchain.firmware.render.render_into` and
    :func:`~toolchain.firmware.build.build_project`.
    """
    if build not in (True, False, "when-possible"):
        raise UsageError(f"build={build!r}: True, False or 'when-possible'")
    tgt = load_target(target) if isinstance(target, str) else target
    if build is True and not selftest and runtime == "tflm" and tflm_lib is None:
        raise UsageError(
            "building the TFLM firmware needs a TFLM static library: --tflm-lib "
            "libtensorflow-microlite.a --tflm-include TFLITE_MICRO_DIR",
            hint="build one with TFLM's own Makefile (docs/tflm-library.md), "
            "or use --runtime compiled (no library), or render without --build",
        )
    out = check_output_path(out_dir, option="--out")
    steps = 2 if build else 1
    progress("firmware", 0, steps)
    with staged_outputs(out) as stage:
        project = render_into(
            stage,
            target=tgt,
            model=model,
            selftest=selftest,
            tflm_lib=tflm_lib,
            tflm_include=tflm_include,
            allow_float=allow_float,
            runtime=runtime,
            cmsis_nn=cmsis_nn,
            cmsis_nn_ops=cmsis_nn_ops,
            patch=patch,
        )
        no_library = project.fw == "tflm" and project.tflm is None
        do_build = build is True or (build == "when-possible" and not no_library)
        if do_build and no_library:
            why = (project.manifest.get("runtime") or {}).get("why", "")
            raise UsageError(
                "building the TFLM firmware needs a TFLM static library: --tflm-lib "
                "libtensorflow-microlite.a --tflm-include TFLITE_MICRO_DIR"
                + (f" (runtime tflm: {why})" if why else ""),
                hint="build one with TFLM's own Makefile (docs/tflm-library.md), "
                "or render without --build",
            )
        progress("firmware", 1, steps)
        built = build_project(stage, tgt, fw=project.fw, jobs=jobs) if do_build else None
        progress("firmware", steps, steps)
    return FirmwareResult(
        project=project.relocated(out), build=built.relocated(out) if built else None
    )


def render_project(
    *,
    target: Target | str,
    out_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    selftest: bool = False,
    runtime: str | None = None,
    tflm_lib: str | os.PathLike[str] | None = None,
    tflm_include: Sequence[str | os.PathLike[str]] = (),
) -> FirmwareProject:
    """:func:`make_firmware` without the build: the rendered project."""
    return make_firmware(
        target=target,
        out_dir=out_dir,
        model=model,
        selftest=selftest,
        runtime=runtime,
        tflm_lib=tflm_lib,
        tflm_include=tflm_include,
    ).project
