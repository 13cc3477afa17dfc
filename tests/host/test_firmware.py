"""Host tier: the Cortex-M firmware project (firmware_templates/cortex-m) rendered for the
target profiles and built with arm-none-eabi-gcc — determinism, copied vs rendered files,
linker scripts and target headers from the memory map, image size against the budget, TFLM
library checks against small archives compiled here for other CPUs/float ABIs, and bad input
(wrong library, over budget, no compiler, strict templates) ending in a clear error with
nothing written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.errors import (
    BudgetError,
    FirmwareError,
    InputFileError,
    LibraryMismatchError,
    TargetError,
    ToolchainMissingError,
    UsageError,
)
from toolchain.firmware import (
    check_library,
    image_memory,
    make_firmware,
    render_project,
    require_compatible,
)
from toolchain.firmware import render as render_mod
from toolchain.firmware.libcheck import read_attributes
from toolchain.targets import iter_targets, load_target

needs_arm_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None,
    reason="needs arm-none-eabi-gcc (scripts/install-system-deps.sh)",
)
TEMPLATE = render_mod.TEMPLATES_DIR / "cortex-m"
MCU_TARGETS = [t.name for t in iter_targets("mcu")]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "build" not in p.relative_to(root).parts
    }


@pytest.fixture(scope="module")
def hello_world(reference_dir: Path) -> Path:
    return reference_dir / "tflm_models" / "hello_world" / "hello_world_int8.tflite"


# --- rendering --------------------------------------------------------------------------------


def test_selftest_render_is_deterministic_and_copies_sources_verbatim(tmp_path: Path) -> None:
    a = render_project(target="lm3s6965evb", out_dir=tmp_path / "a", selftest=True)
    b = render_project(target="lm3s6965evb", out_dir=tmp_path / "b", selftest=True)
    ta, tb = _tree(a.path), _tree(b.path)
    assert ta == tb
    assert set(ta) == set(a.files)
    for rel, data in ta.items():
        src = TEMPLATE / rel
        if src.is_file():  # copied byte for byte
            assert data == src.read_bytes(), rel
        elif rel.startswith("edp/"):
            assert data == (render_mod.EDP_DIR / Path(rel).name).read_bytes()
        else:  # rendered from <rel>.j2
            assert (TEMPLATE / f"{rel}.j2").is_file() or rel == render_mod.MANIFEST, rel
    rendered = {r for r in ta if (TEMPLATE / f"{r}.j2").is_file()}
    assert rendered == {"config.mk", "linker.ld", "include/target_config.h"}
    assert "src/tflm_main.cc" not in ta and "include/model_binding.h" not in ta


def test_tflm_render_is_deterministic(tmp_path: Path, hello_world: Path) -> None:
    a = render_project(
        target="mps2-an386", out_dir=tmp_path / "a", model=hello_world, runtime="tflm"
    )
    b = render_project(
        target="mps2-an386", out_dir=tmp_path / "b", model=hello_world, runtime="tflm"
    )
    assert _tree(a.path) == _tree(b.path)
    binding = (a.path / "include" / "model_binding.h").read_text()
    arts = a.model_artifacts
    assert arts is not None and arts.sha256 in binding
    assert f"#define EDGEDEPLOY_ARENA_BYTES {arts.arena_bytes}u" in binding
    assert '#include "hello_world_int8_model_data.h"' in binding
    assert "#define EDGEDEPLOY_N_OPS 3" in binding  # FULLY_CONNECTED x3
    assert (a.path / "model" / "golden.npz").is_file()
    manifest = json.loads((a.path / render_mod.MANIFEST).read_text())
    assert manifest["model_sha256"] == arts.sha256 and manifest["golden"] == "model/golden.npz"
    assert "EDP_MAX_INPUT_BYTES := 1" in (a.path / "config.mk").read_text()  # one int8 input


def test_compiled_render_is_deterministic_and_has_no_tflm(
    tmp_path: Path, hello_world: Path
) -> None:
    a = render_project(target="mps2-an386", out_dir=tmp_path / "a", model=hello_world)
    b = render_project(target="mps2-an386", out_dir=tmp_path / "b", model=hello_world)
    assert _tree(a.path) == _tree(b.path)  # no staging paths, no timestamps
    assert a.fw == "compiled" and a.tflm is None and a.compiled is not None
    files = set(a.files)
    assert {"src/compiled_main.c", "include/compiled_binding.h", "model/model.h"} <= files
    assert "src/tflm_main.cc" not in files and "include/model_binding.h" not in files
    assert not any(f.endswith(".cc") for f in files)  # C only: no TFLM, no C++
    binding = (a.path / "include" / "compiled_binding.h").read_text()
    assert '#include "model.h"' in binding and "#define EDC_MODEL_INVOKE model_invoke" in binding
    manifest = json.loads((a.path / render_mod.MANIFEST).read_text())
    assert manifest["fw"] == "compiled" and manifest["golden"] == "model/golden.npz"
    assert manifest["runtime"]["why"] == "the compiler supports every operator of the model"
    assert (
        manifest["compiled"]["n_ops"] == 3
        and manifest["compiled"]["ops"] == ["FULLY_CONNECTED"] * 3
    )
    assert str(tmp_path) not in json.dumps(manifest["compiled"])
    assert "FW ?= compiled" in (a.path / "config.mk").read_text()


def test_runtime_choice(tmp_path: Path, hello_world: Path) -> None:
    auto = render_mod.choose_runtime(hello_world, None)
    assert auto.name == "compiled" and auto.lowered is not None  # lowered once, passed on
    with_lib = render_mod.choose_runtime(hello_world, None, tflm_lib=True)
    assert (with_lib.name, with_lib.why) == ("tflm", "a TFLM library was given")
    assert render_mod.choose_runtime(hello_world, "tflm").name == "tflm"
    with pytest.raises(UsageError, match="unknown firmware runtime"):
        render_mod.choose_runtime(hello_world, "tvm")
    with pytest.raises(UsageError, match="uses no TFLM library"):
        render_project(target="mps2-an386", out_dir=tmp_path / "x", model=hello_world,
                       runtime="compiled", tflm_lib=tmp_path / "lib.a")  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_auto_runtime_lowers_the_model_once(
    tmp_path: Path, hello_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing the compiled runtime (every operator supported) and compiling share one
    lowering of the model."""
    from toolchain.compile import lower as lower_mod

    calls: list[str] = []
    real = lower_mod._lower

    def counting(model, *, collect):  # type: ignore[no-untyped-def]
        calls.append(model.source)
        return real(model, collect=collect)

    monkeypatch.setattr(lower_mod, "_lower", counting)
    proj = render_project(target="mps2-an386", out_dir=tmp_path / "fw", model=hello_world)
    assert proj.fw == "compiled" and len(calls) == 1


def test_build_when_possible_renders_tflm_without_a_library(
    tmp_path: Path, reference_dir: Path
) -> None:
    """``build="when-possible"`` (the run stage's): the runtime is chosen by make_firmware, so
    the manifest says why (the operator the compiler lacks), not "asked for"; TFLM without a
    library is rendered, not built, and is no error."""
    model = reference_dir / "tflm_models" / "mnist_lstm" / "trained_lstm_int8.tflite"
    if not model.is_file():
        pytest.skip(f"{model} is not there")
    res = make_firmware(
        target="mps2-an386", out_dir=tmp_path / "fw", model=model, build="when-possible"
    )
    assert res.project.fw == "tflm" and res.build is None
    why = res.project.manifest["runtime"]["why"]
    assert why.startswith("the compiler lacks") and "LSTM" in why
    with pytest.raises(UsageError, match="build="):
        make_firmware(target="mps2-an386", out_dir=tmp_path / "x", model=model, build="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", MCU_TARGETS)
def test_linker_script_and_config_from_the_target_profile(name: str, tmp_path: Path) -> None:
    t = load_target(name)
    p = render_project(target=t, out_dir=tmp_path / name, selftest=True)
    ld = (p.path / "linker.ld").read_text()
    m = t.memory
    assert f"FLASH (rx)  : ORIGIN = 0x{m.flash_origin:08X}, LENGTH = {m.flash_bytes}" in ld
    assert f"RAM   (rwx) : ORIGIN = 0x{m.ram_origin:08X}, LENGTH = {m.ram_bytes}" in ld
    assert f"__stack_size__ = {m.stack_bytes};" in ld and f"__heap_size__ = {m.heap_bytes};" in ld
    cfg = (p.path / "include" / "target_config.h").read_text()
    fw = t.firmware
    assert fw is not None
    assert f'#define EDGEDEPLOY_TARGET_NAME "{name}"' in cfg
    assert f"#define EDGEDEPLOY_CLOCK_HZ {t.cpu.clock_hz}u" in cfg
    assert f"#define EDGEDEPLOY_HAS_DWT {int(fw.has_dwt)}" in cfg
    assert f"#define EDGEDEPLOY_SEMIHOSTING {int(fw.semihosting_exit)}" in cfg
    assert f"#define EDGEDEPLOY_QEMU_ICOUNT {int(t.transport.kind == 'qemu')}" in cfg
    if fw.uart_base is not None:
        assert f"#define EDGEDEPLOY_UART_BASE 0x{fw.uart_base:08X}u" in cfg
    assert (f"#define EDGEDEPLOY_UART_IRQ {fw.uart_irq}u" in cfg) == (fw.uart_irq is not None)
    mk = (p.path / "config.mk").read_text()
    assert f"CPU_FLAGS := {' '.join(t.cpu.gcc_flags())}\n" in mk
    assert f"BOARD := {fw.board.replace('-', '_')}\n" in mk


def test_strict_templates_fail_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(render_mod.TEMPLATES_DIR, broken)
    (broken / "cortex-m" / "linker.ld.j2").write_text("LENGTH = {{ no_such_value }}\n")
    monkeypatch.setattr(render_mod, "TEMPLATES_DIR", broken)
    out = tmp_path / "out"
    with pytest.raises(FirmwareError, match="linker.ld.j2.*no_such_value"):
        render_project(target="mps2-an386", out_dir=out, selftest=True)
    assert not out.exists()


def test_render_rejects_bad_requests(tmp_path: Path, hello_world: Path) -> None:
    with pytest.raises(TargetError, match="firmware is built for MCU targets only"):
        render_project(target="rpi4", out_dir=tmp_path / "a", selftest=True)
    with pytest.raises(UsageError, match="model is needed"):
        render_project(target="mps2-an386", out_dir=tmp_path / "b")
    with pytest.raises(UsageError, match="takes no model"):
        render_project(
            target="mps2-an386", out_dir=tmp_path / "c", model=hello_world, selftest=True
        )
    assert not any(tmp_path.iterdir())


def test_model_over_the_flash_budget_writes_nothing(tmp_path: Path, hello_world: Path) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(
        'name = "tiny"\nextends = "mps2-an386"\n[memory]\nflash_bytes = 2048\n', encoding="utf-8"
    )
    out = tmp_path / "out"
    with pytest.raises(BudgetError) as info:
        make_firmware(target=load_target(str(tiny)), out_dir=out, model=hello_world, runtime="tflm")
    assert info.value.exit_code == 4
    assert not out.exists()


def test_compiled_firmware_for_a_target_file(tmp_path: Path, hello_world: Path) -> None:
    """A target profile from a .toml file (not a built-in name) reaches the compiler as it is;
    its heap counts against the compiled arena, with the same check as the TFLM firmware's."""
    roomy = tmp_path / "roomy.toml"
    roomy.write_text('name = "roomy"\nextends = "mps2-an386"\n', encoding="utf-8")
    proj = render_project(target=load_target(str(roomy)), out_dir=tmp_path / "a", model=hello_world)
    assert proj.fw == "compiled" and proj.target.name == "roomy"
    # 4 MiB of RAM, all but 8 B stack and heap: compile's own check (arena + stack) passes
    full = tmp_path / "full.toml"
    full.write_text('name = "full"\nextends = "mps2-an386"\n[memory]\nheap_bytes = 4177912\n',
                    encoding="utf-8")  # fmt: skip
    out = tmp_path / "b"
    with pytest.raises(BudgetError, match="the compiled model's arena needs .* RAM left after"):
        render_project(target=load_target(str(full)), out_dir=out, model=hello_world)
    assert not out.exists()


# --- building ---------------------------------------------------------------------------------


@needs_arm_gcc
def test_selftest_build_and_image_size(tmp_path: Path) -> None:
    target = load_target("mps2-an386")
    result = make_firmware(target=target, out_dir=tmp_path / "fw", selftest=True, build=True)
    b = result.build
    assert b is not None
    for f in (b.elf, b.bin, b.hex, b.map):
        assert f.is_file() and f.is_relative_to(tmp_path / "fw")
    assert not list((tmp_path / "fw").glob(".staging-*"))
    # Cross-check with arm-none-eabi-size: flash = everything loaded into flash, RAM = .data
    # + .bss + the reserved heap and stack.
    out = subprocess.run(
        ["arm-none-eabi-size", "-A", str(b.elf)], capture_output=True, text=True, check=True
    ).stdout
    sizes = {m[1]: int(m[2]) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", out, re.M)}
    m = b.memory
    assert m.flash_used == sum(
        sizes.get(s, 0) for s in (".text", ".ARM.exidx", ".init_array", ".data")
    )
    assert m.ram_used == sum(sizes.get(s, 0) for s in (".data", ".bss", ".heap", ".stack"))
    assert sizes[".stack"] == target.memory.stack_bytes
    assert sizes[".heap"] == target.memory.heap_bytes
    assert 4_000 < m.flash_used < 20_000 and m.fits
    assert image_memory(b.elf, target) == m
    # the vector table: initial SP = end of RAM, reset handler in flash (Thumb bit set)
    words = b.bin.read_bytes()[:8]
    sp, reset = int.from_bytes(words[:4], "little"), int.from_bytes(words[4:], "little")
    assert sp == target.memory.ram_origin + target.memory.ram_bytes
    assert reset & 1 and reset < (target.memory.flash_bytes or 0)


@needs_arm_gcc
def test_image_over_the_ram_budget_is_a_budget_error(tmp_path: Path) -> None:
    small = tmp_path / "small.toml"
    small.write_text(
        'name = "small"\nextends = "lm3s6965evb"\n[memory]\nram_bytes = 20480\n'
        "stack_bytes = 16384\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    with pytest.raises(BudgetError, match=r"does not fit small: RAM by [\d,]+ B"):
        make_firmware(target=load_target(str(small)), out_dir=out, selftest=True, build=True)
    assert not out.exists()


def test_missing_cross_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    with pytest.raises(ToolchainMissingError, match="arm-none-eabi-gcc not found"):
        make_firmware(target="mps2-an386", out_dir=out, selftest=True, build=True)
    assert not out.exists()


def test_tflm_build_needs_a_library(tmp_path: Path, hello_world: Path) -> None:
    with pytest.raises(UsageError, match="needs a TFLM static library"):
        make_firmware(
            target="mps2-an386",
            out_dir=tmp_path / "o",
            model=hello_world,
            runtime="tflm",
            build=True,
        )
    assert not (tmp_path / "o").exists()


# --- TFLM library checks ----------------------------------------------------------------------

SOURCES = {
    "micro_interpreter.c": "float scale(float a, float b) { return a * b; }\n",
    "arm_convolve_s8.c": "int conv(int x) { return x * 3; }\n",
}


def _lib(tmp_path: Path, name: str, flags: list[str], cc: str = "arm-none-eabi-gcc") -> Path:
    d = tmp_path / name
    d.mkdir()
    objs = []
    for fname, code in SOURCES.items():
        (d / fname).write_text(code)
        obj = d / fname.replace(".c", ".o")
        subprocess.run([cc, *flags, "-O2", "-c", str(d / fname), "-o", str(obj)], check=True)
        objs.append(str(obj))
    ar = "arm-none-eabi-ar" if cc.startswith("arm") else "ar"
    lib = d / "libtensorflow-microlite.a"
    subprocess.run([ar, "rcs", str(lib), *objs], check=True)
    return lib


M4_HARD = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


@needs_arm_gcc
@pytest.mark.parametrize(
    ("flags", "target", "problems"),
    [
        (M4_HARD, "mps2-an386", []),
        (["-mcpu=cortex-m3", "-mthumb"], "lm3s6965evb", []),
        (["-mcpu=cortex-m0plus", "-mthumb"], "rpi-pico", []),
        (["-mcpu=cortex-m3", "-mthumb"], "rpi-pico", ["needs v7 but rpi-pico's cortex-m0plus"]),
        (["-mcpu=cortex-m4", "-mthumb"], "mps2-an386", ["float ABI: built with -mfloat-abi=soft"]),
        (
            ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"],
            "mps2-an386",
            ["float ABI: built with -mfloat-abi=soft/softfp"],
        ),
        (
            M4_HARD,
            "lm3s6965evb",
            ["needs v7E-M", "float ABI: built with -mfloat-abi=hard", "has no FPU"],
        ),
        (
            ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"],
            "mps2-an386",
            ["needs v8-M.mainline", "uses FPv5/FP-D16 for ARMv8 instructions"],
        ),
        (
            ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
            "mps2-an505",
            ["double-precision"],
        ),
        (
            ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
            "mps2-an500",
            [],
        ),
    ],
)
def test_library_matches_target(
    tmp_path: Path, flags: list[str], target: str, problems: list[str]
) -> None:
    lib = _lib(tmp_path, "lib", flags)
    check = check_library(lib, load_target(target))
    assert len(check.problems) == len(problems), check.problems
    for want, got in zip(problems, check.problems, strict=True):
        assert want in got
    assert check.members == 2 and check.cmsis_nn
    if not problems:
        assert require_compatible(lib, load_target(target)) == check
    else:
        with pytest.raises(LibraryMismatchError) as info:
            require_compatible(lib, load_target(target))
        assert "TARGET=cortex_m_generic" in (info.value.hint or "")


@needs_arm_gcc
def test_library_description_and_hints(tmp_path: Path) -> None:
    lib = _lib(tmp_path, "m4", M4_HARD)
    check = check_library(lib, load_target("mps2-an386"))
    assert check.describe().startswith(
        "libtensorflow-microlite.a v7E-M hard-float, VFPv4-D16, CMSIS-NN kernels, 2 objects"
    )
    soft = _lib(tmp_path, "soft", ["-mcpu=cortex-m4", "-mthumb"])
    with pytest.raises(LibraryMismatchError) as info:
        require_compatible(soft, load_target("mps2-an386"))
    assert "TARGET_ARCH=cortex-m4+fp" in (info.value.hint or "")
    with pytest.raises(LibraryMismatchError) as info:
        require_compatible(soft, load_target("stm32f746g-disco"))
    assert "TARGET_ARCH=cortex-m7+fp FPU=fpv5-sp-d16" in (info.value.hint or "")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs host gcc")
@needs_arm_gcc
def test_host_library_is_not_arm(tmp_path: Path) -> None:
    lib = _lib(tmp_path, "x86", [], cc="gcc")
    check = check_library(lib, load_target("mps2-an386"))
    assert check.problems and "not Arm code" in check.problems[0]


@needs_arm_gcc
def test_library_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_attributes(tmp_path / "missing.a")
    bogus = tmp_path / "bogus.a"
    bogus.write_bytes(b"not an archive")
    with pytest.raises(InputFileError, match="not a static library"):
        read_attributes(bogus)


def test_library_check_without_readelf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "empty.a"
    archive.write_bytes(b"!<arch>\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ToolchainMissingError, match="arm-none-eabi-readelf not found"):
        read_attributes(archive)


@needs_arm_gcc
def test_wrong_library_leaves_no_project(tmp_path: Path, hello_world: Path) -> None:
    lib = _lib(tmp_path, "m4", M4_HARD)
    out = tmp_path / "out"
    with pytest.raises(LibraryMismatchError, match="does not match target lm3s6965evb"):
        make_firmware(
            target="lm3s6965evb",
            out_dir=out,
            model=hello_world,
            tflm_lib=lib,
            tflm_include=[tmp_path],
            build=True,
        )
    assert not out.exists()


# --- CLI --------------------------------------------------------------------------------------


@needs_arm_gcc
def test_cli_builds_the_selftest_firmware(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fw"
    rc = main(
        ["firmware", "--target", "mps2-an500", "--selftest", "--out", str(out), "--build", "--json"]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fw"] == "selftest" and report["target"] == "mps2-an500"
    assert report["build"]["memory"]["flash_used_bytes"] > 0
    assert Path(report["build"]["elf"]).is_file()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["firmware", "--target", "rpi4", "--selftest", "--out", str(tmp_path / "a")]) == 1
    assert "MCU targets only" in capsys.readouterr().err
    assert main(["firmware", "--target", "mps2-an386", "--out", str(tmp_path / "b")]) == 2
    assert "--model" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@needs_arm_gcc
def test_cli_refuses_a_library_for_another_float_abi(
    tmp_path: Path, hello_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soft = _lib(tmp_path, "soft", ["-mcpu=cortex-m4", "-mthumb"])  # TFLM's TARGET_ARCH=cortex-m4
    out = tmp_path / "out"
    rc = main(["firmware", "--target", "mps2-an386", "--model", str(hello_world), "--out",
               str(out), "--tflm-lib", str(soft), "--tflm-include", str(tmp_path), "--build"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "-mfloat-abi=soft" in err and "TARGET_ARCH=cortex-m4+fp" in err
