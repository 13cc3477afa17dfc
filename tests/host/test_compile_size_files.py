"""Per-model build choices the compiler writes for the firmware: ``<name>.mk`` names the kernel
files that do < 1 % of the model's work (built -Os: smaller, no measurable slowdown), and split
tables use the narrowest C type holding their numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.compile import lower_and_plan
from toolchain.compile.cwriter import CWriter, size_files

pytestmark = pytest.mark.host

IC = "mlperf_tiny/ic/pretrainedResnet_quant.tflite"
AD = "mlperf_tiny/ad/ad01_int8.tflite"


def _writer(path: Path) -> CWriter:
    g, p = lower_and_plan(path, target="mps2-an386")
    return CWriter(g, p, "model", path.name)


def test_ic_small_kernels_built_for_size(reference_dir: Path) -> None:
    w = _writer(reference_dir / IC)
    files = size_files(w.g)
    # the 64->10 FC (plain kernel: 640 weights), the average pool and the softmax are a
    # sliver of IC's work ...
    assert files == ["edc_fc.c", "edc_pool.c", "edc_softmax.c"]
    # ... the convolutions and the residual ADDs (requantized per element: -Os cost +2.3 %
    # instructions, measured) are not
    assert "edc_conv_fast.c" not in files and "edc_binary.c" not in files
    mk = w.files()["model.mk"]
    assert "MODEL_OS_FILES ?= edc_fc.c edc_pool.c edc_softmax.c\n" in mk
    # IC's first two convolutions run split in 32 bands: the table's numbers fit int8
    c = w.files()["model.c"]
    assert "static const int8_t model_split[32][2][6]" in c
    assert "const int8_t (*st_)[6] = model_split[band_];" in c


def test_ad_keeps_its_fc_fast(reference_dir: Path) -> None:
    # AD is fully connected layers only: its (fast) FC kernel is all of its work, stays -O2
    w = _writer(reference_dir / AD)
    assert "edc_fc_fast" in w.g.kernels()
    files = size_files(w.g)
    assert "edc_fc_fast.c" not in files and "edc_fc.c" not in files
    # an explicit threshold of 0 builds nothing -Os
    assert size_files(_writer(reference_dir / AD).g, share=0.0) == []
