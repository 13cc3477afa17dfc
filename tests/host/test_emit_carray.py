"""Host tier: the model array files — xxd-identical bytes, TFLM's convention, names, compiling
with g++ and arm-none-eabi-g++, and a host program that prints the array back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.emit_cxx import compile_cxx, need
from toolchain.emit import carray, cnames
from toolchain.errors import EmitError, UsageError
from toolchain.targets import load_target

ABOUT = ["test model"]


@pytest.mark.parametrize("n", [0, 1, 11, 12, 13, 24, 1000, 65_537])
def test_format_bytes_matches_xxd(tmp_path: Path, n: int) -> None:
    if shutil.which("xxd") is None:
        pytest.skip("xxd not installed (scripts/install-system-deps.sh installs it)")
    data = os.urandom(n)
    f = tmp_path / "m.bin"
    f.write_bytes(data)
    xxd = subprocess.run(["xxd", "-i", str(f)], capture_output=True, check=True).stdout
    body = xxd.split(b"{\n", 1)[1].split(b"};", 1)[0] if n else b""
    assert carray.format_bytes(data) == body


def test_model_data_follows_tflm_convention() -> None:
    md = carray.model_data(b"\x01\x02\x03", name="kws", about=ABOUT)
    h, cc = md.header.decode(), md.source.decode()
    assert (md.header_name, md.source_name) == ("kws_model_data.h", "kws_model_data.cc")
    assert "#ifndef KWS_MODEL_DATA_H_\n#define KWS_MODEL_DATA_H_" in h
    assert "extern const unsigned char g_kws_model_data[];" in h
    assert "extern const unsigned int g_kws_model_data_size;" in h
    assert "alignas(16) const unsigned char g_kws_model_data[] = {\n  0x01, 0x02, 0x03\n};" in cc
    assert "const unsigned int g_kws_model_data_size = 3;" in cc
    assert '#include "kws_model_data.h"' in cc


def test_namespace_and_section() -> None:
    md = carray.model_data(b"\x00", name="m", about=ABOUT, namespace="a::b", section=".rodata.nn")
    cc = md.source.decode()
    assert 'g_m_model_data[] __attribute__((section(".rodata.nn"))) = {' in cc
    assert "namespace a {\nnamespace b {" in cc and "}  // namespace b\n}  // namespace a" in cc
    assert md.array_symbol == "a::b::g_m_model_data"


@pytest.mark.parametrize(
    "bad", ["1model", "my-model", "", "class", "a__b", "_Model", "mödel", "a b"]
)
def test_bad_symbol_names_are_rejected(bad: str) -> None:
    with pytest.raises(UsageError, match="not a valid C identifier"):
        carray.model_data(b"\x00", name=bad, about=ABOUT)


@pytest.mark.parametrize("ns", ["a::", "::a", "a::1b", "namespace", "a-b"])
def test_bad_namespaces_are_rejected(ns: str) -> None:
    with pytest.raises(UsageError):
        carray.model_data(b"\x00", name="m", about=ABOUT, namespace=ns)


@pytest.mark.parametrize("section", ['.x"y', "a b", ".x)", ""])
def test_bad_sections_are_rejected(section: str) -> None:
    with pytest.raises(UsageError, match="section"):
        cnames.check_section(section)


def test_sanitize_and_camel() -> None:
    assert cnames.sanitize("person-detect.v2") == "person_detect_v2"
    assert cnames.sanitize("2x_model") == "model_2x_model"
    assert cnames.sanitize("---") == "model"
    assert cnames.sanitize("int") == "int_model"
    assert cnames.camel("person_detect") == "PersonDetect"


def test_format_values_types() -> None:
    assert carray.format_values(np.array([-128, 0, 127], np.int8)) == "  -128, 0, 127,\n"
    assert "(-2147483647 - 1)" in carray.format_values(np.array([-(2**31)], np.int32))
    text = carray.format_values(np.array([0.1, -2.5e-8], np.float32))
    assert [np.float32(v.strip().rstrip("f")) for v in text.strip().rstrip(",").split(",")] == [
        np.float32(0.1),
        np.float32(-2.5e-8),
    ]
    with pytest.raises(EmitError, match="NaN"):
        carray.format_values(np.array([np.nan], np.float32))


PRINT_BACK = r"""
#include <cstdio>
#include "%(name)s_model_data.h"
int main() {
  const unsigned char* p = %(ns)sg_%(name)s_model_data;
  if (reinterpret_cast<unsigned long>(p) %% 16 != 0) return 2;
  std::fwrite(p, 1, %(ns)sg_%(name)s_model_data_size, stdout);
  return 0;
}
"""


@pytest.mark.parametrize("namespace", [None, "edge::models"])
def test_host_program_prints_the_model_back(tmp_path: Path, namespace: str | None) -> None:
    data = os.urandom(4099) + b"TFL3"
    md = carray.model_data(data, name="m", about=ABOUT, namespace=namespace, section=".rodata.m")
    (tmp_path / md.header_name).write_bytes(md.header)
    (tmp_path / md.source_name).write_bytes(md.source)
    main = tmp_path / "main.cc"
    main.write_text(PRINT_BACK % {"name": "m", "ns": f"{namespace}::" if namespace else ""})
    exe = compile_cxx("g++", tmp_path / "print", [main, tmp_path / md.source_name], f"-I{tmp_path}")
    out = subprocess.run([str(exe)], capture_output=True, check=True, timeout=30).stdout
    assert out == data


def test_cross_compiles_for_cortex_m4(tmp_path: Path) -> None:
    need("arm-none-eabi-g++")
    flags = load_target("mps2-an386").cpu.gcc_flags()
    md = carray.model_data(b"\x11" * 100, name="m", about=ABOUT, section=".model_flash")
    (tmp_path / md.header_name).write_bytes(md.header)
    src = tmp_path / md.source_name
    src.write_bytes(md.source)
    obj = compile_cxx("arm-none-eabi-g++", tmp_path / "m.o", [src], "-c", "-Os", *flags)
    sections = subprocess.run(
        ["arm-none-eabi-readelf", "-S", "-W", str(obj)], capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in sections.splitlines() if ".model_flash" in ln)
    assert int(line.split()[-1]) >= 16  # section alignment (last column)
    syms = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(obj)], capture_output=True, text=True, check=True
    ).stdout
    assert "g_m_model_data" in syms and "g_m_model_data_size" in syms
