"""Host tier: parsing benchmark_model output, against real samples from its documentation
(tests/data/benchmark_model/, sources in SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.bench.benchmark_model_output import parse_benchmark_model_output
from toolchain.errors import BenchmarkError

DATA = Path(__file__).resolve().parent.parent / "data" / "benchmark_model"


def test_tf_readme_op_profiling_sample() -> None:
    out = parse_benchmark_model_output((DATA / "tf_readme_mobilenet_op_profiling.txt").read_text())
    # no statistics line in the README excerpt: the older average line gives the mean
    assert out.inference.count == 0 and out.inference.mean_us == pytest.approx(79760.9)
    assert (out.warmup_avg_us, out.init_us) == (83235.0, 38467.0)
    assert len(out.run_order) == 31
    first, last = out.run_order[0], out.run_order[-1]
    assert (first.node_type, first.avg_ms, first.start_ms) == ("CONV_2D", 4.269, 0.0)
    assert first.name == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"
    assert (last.node_type, last.name) == ("SOFTMAX", "MobilenetV1/Predictions/Softmax")
    types = {r.node_type: r for r in out.by_node_type}
    assert types["CONV_2D"].count == 15 and types["CONV_2D"].avg_ms == 1.406
    assert types["DEPTHWISE_CONV_2D"].percent == pytest.approx(10.730)


def test_meta_tensorflow_lite_full_run() -> None:
    out = parse_benchmark_model_output(
        (DATA / "meta_tflite_riscv64_mobilenet_op_profiling.txt").read_text()
    )
    assert out.warmup is not None and out.warmup.count == 1 and out.warmup.curr == 3512391
    s = out.inference
    assert (s.count, s.first, s.min, s.max, s.std) == (50, 2990275, 2727568, 3189954, 109798)
    assert s.avg == pytest.approx(2.95034e6)  # written in scientific notation
    assert out.init_us == 17187 and out.first_inference_us == 3512391
    assert out.memory_mb == {"init": 4.21094, "overall": 46.0859}
    assert out.model_size_mb == pytest.approx(16.9008)
    assert out.params["Num threads"] == "4" and out.params["Enable op profiling"] == "1"
    # the initialization profile (AllocateTensors) is skipped: the regular-run table is used
    assert len(out.run_order) == 31 and out.run_order[0].node_type == "CONV_2D"
    assert out.run_order[0].name == "MobilenetV1/MobilenetV1/Conv2d_0/Relu6:0"
    assert out.run_order[0].avg_ms == 60.957 and out.run_order[0].first_ms == 87.754
    assert sum(r.count or 0 for r in out.by_node_type) == 31


def test_android_summary_sample() -> None:
    out = parse_benchmark_model_output((DATA / "yolov5s_mi11_cpu_and_nnapi.txt").read_text())
    assert out.warmup is None and out.inference.count == 50
    assert out.inference.mean_us == 249684 and out.inference_avg_us == 249684
    assert out.memory_mb == {"init": 4.92969, "overall": 138.809}
    assert out.run_order == []


def test_percentiles_logcat_prefix_and_all_same() -> None:
    text = (
        "I tflite  : count=3 curr=1200(all same)\n"
        "I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 "
        "std=13583 p5=140545 median=141253 p95=187533\n"
        "INFO: Replacing 539 out of 548 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 19 partitions for subgraph 0.\n"
    )
    out = parse_benchmark_model_output(text)
    assert out.warmup is not None and (out.warmup.count, out.warmup.mean_us) == (3, 1200)
    assert out.inference.extra == {"p5": 140545, "median": 141253, "p95": 187533}
    assert out.delegations == [("TfLiteXNNPackDelegate", 539, 548)]


def test_failed_run_has_a_clear_error() -> None:
    text = "STARTING!\nGraph: [/data/local/tmp/x.tflite]\nERROR: Failed to mmap model /data/local/tmp/x.tflite\n"
    with pytest.raises(BenchmarkError, match="Failed to mmap model"):
        parse_benchmark_model_output(text)
    with pytest.raises(BenchmarkError, match="no timing statistics"):
        parse_benchmark_model_output("")
