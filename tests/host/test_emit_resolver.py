"""Host tier: the op resolver — the table of MicroMutableOpResolver methods, the operators a
model really uses (person_detect: exactly five), and a header that compiles."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from ai_edge_litert import schema_py_generated as schema

from tests.support.emit_cxx import compile_cxx
from toolchain.emit import resolver
from toolchain.errors import EmitError
from toolchain.tflite_model import TFLiteModel


def test_table_names_real_builtin_ops_and_unique_methods() -> None:
    builtins = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")}
    assert set(resolver.BUILTIN_METHODS) <= builtins
    methods = [*resolver.BUILTIN_METHODS.values(), *resolver.CUSTOM_METHODS.values()]
    assert len(methods) == len(set(methods)) == 118
    assert all(m.startswith("Add") for m in methods)
    for op, method in {
        "CONV_2D": "AddConv2D",
        "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
        "FULLY_CONNECTED": "AddFullyConnected",
        "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
        "CUSTOM:SignalWindow": "AddWindow",
        "CUSTOM:ethos-u": "AddEthosU",
    }.items():
        assert resolver.method_for(op) == method


def test_person_detect_registers_exactly_five_ops(reference_dir: Path) -> None:
    m = TFLiteModel.from_file(reference_dir / "tflm_models/person_detection/person_detect.tflite")
    spec = resolver.resolver_spec(m)
    assert spec.methods == (
        "AddAveragePool2D",
        "AddConv2D",
        "AddDepthwiseConv2D",
        "AddReshape",
        "AddSoftmax",
    )
    _, text = resolver.header(spec, name="person_detect", about=["x"])
    assert "tflite::MicroMutableOpResolver<kPersonDetectOpCount>" in text.decode()
    assert "constexpr int kPersonDetectOpCount = 5;" in text.decode()
    assert text.decode().count("resolver.Add") == 5


def test_audio_preprocessor_signal_ops(reference_dir: Path) -> None:
    m = TFLiteModel.from_file(
        reference_dir / "tflm_models/micro_speech/audio_preprocessor_int8.tflite"
    )
    methods = resolver.resolver_spec(m).methods
    assert {"AddWindow", "AddRfft", "AddFilterBank", "AddPCAN", "AddStridedSlice"} <= set(methods)


def test_an_op_tflm_lacks_is_named() -> None:
    fake = SimpleNamespace(
        source="m.tflite", op_names=lambda: ["CONV_2D", "HASHTABLE", "CUSTOM:MyOp"]
    )
    with pytest.raises(EmitError, match="no kernel for HASHTABLE, CUSTOM:MyOp"):
        resolver.resolver_spec(fake)  # type: ignore[arg-type]


# A stand-in for TFLM's header, generated from the table: checks that the emitted code is
# valid C++ that calls the methods the table names (the real header is checked by the
# tflm_lib test below when a TFLM checkout is available).
STUB = """
#pragma once
typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
template <unsigned int N> class MicroMutableOpResolver {
 public:
%s
  unsigned int count = 0;
};
}  // namespace tflite
"""

MAIN = """
#include "m_op_resolver.h"
int main() {
  static ns::MOpResolver r;
  if (ns::RegisterMOps(r) != kTfLiteOk) return 1;
  return r.count == ns::kMOpCount ? 0 : 2;
}
"""


def test_header_compiles_against_a_table_stub(tmp_path: Path) -> None:
    ops = ["CONV_2D", "SOFTMAX", "CUSTOM:SignalWindow", "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    spec = resolver.resolver_spec(SimpleNamespace(source="m", op_names=lambda: ops))  # type: ignore[arg-type]
    name, text = resolver.header(spec, name="m", about=["x"], namespace="ns")
    (tmp_path / name).write_bytes(text)
    inc = tmp_path / "tensorflow/lite/micro"
    inc.mkdir(parents=True)
    methods = sorted({*resolver.BUILTIN_METHODS.values(), *resolver.CUSTOM_METHODS.values()})
    body = "\n".join(f"  TfLiteStatus {m}() {{ ++count; return kTfLiteOk; }}" for m in methods)
    (inc / "micro_mutable_op_resolver.h").write_text(STUB % body)
    (tmp_path / "main.cc").write_text(MAIN)
    exe = compile_cxx("g++", tmp_path / "r", [tmp_path / "main.cc"], f"-I{tmp_path}")
    assert subprocess.run([str(exe)], timeout=30).returncode == 0


@pytest.mark.tflm_lib
def test_header_compiles_against_real_tflm(tmp_path: Path, tflm_library: tuple[Path, Path]) -> None:
    _, include = tflm_library
    names = [*resolver.BUILTIN_METHODS, *(f"CUSTOM:{c}" for c in resolver.CUSTOM_METHODS)]
    spec = resolver.resolver_spec(SimpleNamespace(source="m", op_names=lambda: names))  # type: ignore[arg-type]
    name, text = resolver.header(spec, name="m", about=["x"], namespace="ns")
    (tmp_path / name).write_bytes(text)
    src = tmp_path / "use.cc"
    src.write_text(
        '#include "m_op_resolver.h"\nint f(ns::MOpResolver& r) { return ns::RegisterMOps(r); }\n'
    )
    downloads = (
        include / "tensorflow/lite/micro/tools/make/downloads"
    )  # TFLM's Makefile puts them here
    flags = [f"-I{tmp_path}", "-isystem", str(include), "-c", "-DTF_LITE_STATIC_MEMORY"]
    for d in ("flatbuffers/include", "gemmlowp", "ruy"):
        flags += ["-isystem", str(downloads / d)]
    compile_cxx("g++", tmp_path / "use.o", [src], *flags)
