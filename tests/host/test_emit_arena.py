"""Host tier: the arena search — for every reference model TFLM runs, the emitted arena
allocates and invokes, the size 16 bytes below the minimum does not, and the emitted size is
within 1.05x of the minimum; models TFLM rejects are named with the reason; crashes of the
interpreter at too-small arenas do not reach the caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.emit import arena, sandbox
from toolchain.emit.model_input import load, model_file
from toolchain.errors import TFLiteModelError, UsageError

#: Reference models the tflite-micro interpreter runs (all others are in REJECTED).
RUNNABLE = [
    "armzoo/anomaly_detection_micronet_large/ad_large_int8.tflite",
    "armzoo/anomaly_detection_micronet_small/ad_small_int8.tflite",
    "armzoo/keyword_spotting_ds_cnn_small/ds_cnn_s_quantized.tflite",
    "armzoo/noise_suppression_RNNoise/rnnoise_INT8.tflite",
    "armzoo/visual_wake_words_micronet_vww2/vww2_50_50_INT8.tflite",
    "coral_test_data/keras_lstm_mnist_ptq.tflite",
    "mlperf_tiny/ad/ad01_fp32.tflite",
    "mlperf_tiny/ad/ad01_int8.tflite",
    "mlperf_tiny/ic/pretrainedResnet.tflite",
    "mlperf_tiny/ic/pretrainedResnet_large_float.tflite",
    "mlperf_tiny/ic/pretrainedResnet_large_int8.tflite",
    "mlperf_tiny/ic/pretrainedResnet_quant.tflite",
    "mlperf_tiny/kws/kws_ref_model.tflite",
    "mlperf_tiny/sww/str_ww_ref_model.tflite",
    "mlperf_tiny/vww/vww_96_float.tflite",
    "mlperf_tiny/vww/vww_96_int8.tflite",
    "tflm_models/dtln/dtln_noise_suppression.tflite",
    "tflm_models/hello_world/hello_world_float.tflite",
    "tflm_models/hello_world/hello_world_int8.tflite",
    "tflm_models/keyword_benchmark/keyword_scrambled.tflite",
    "tflm_models/keyword_benchmark/keyword_scrambled_8bit.tflite",
    "tflm_models/memory_footprint/simple_add_model.tflite",
    "tflm_models/micro_speech/audio_preprocessor_float.tflite",
    "tflm_models/micro_speech/audio_preprocessor_int8.tflite",
    "tflm_models/micro_speech/micro_speech_quantized.tflite",
    "tflm_models/micro_speech_lstm/micro_speech_lstm.tflite",
    "tflm_models/mnist_lstm/trained_lstm.tflite",
    "tflm_models/mnist_lstm/trained_lstm_int8.tflite",
    "tflm_models/person_detection/person_detect.tflite",
    "tflm_models/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite",
]
REJECTED = {
    "tflm_models/person_detection/person_detect_vela.tflite": "custom op(s) ethos-u",
    "mlperf_tiny/kws/kws_ref_model_float32.tflite": "Hybrid models are not supported",
    "coral_test_data/mobilenet_v1_0.25_128_quant.tflite": "Hybrid models are not supported",
}


def _works(path: Path, size: int) -> bool:
    with model_file(load(path)) as mf:
        try:
            reply = sandbox.shared().request("tflm_attempt", arena=size, invoke=True, **mf.fields())
        except sandbox.SandboxCrash:
            return False
    return bool(reply["ok"])


def test_every_reference_model_is_classified(reference_dir: Path) -> None:
    found = {str(p.relative_to(reference_dir)) for p in reference_dir.rglob("*.tflite")}
    assert found == set(RUNNABLE) | set(REJECTED)


@pytest.mark.parametrize("rel", RUNNABLE)
def test_emitted_arena_works_and_is_tight(reference_dir: Path, rel: str) -> None:
    path = reference_dir / rel
    found = arena.search_arena(path)
    emitted = arena.recommended_arena(path)
    assert emitted % 16 == 0 and found.minimum % 16 == 0
    assert found.minimum <= emitted <= 1.05 * found.minimum
    assert _works(path, emitted)
    assert not _works(path, found.minimum - 16)  # checked here, not trusted from the search


def test_search_is_cached(reference_dir: Path) -> None:
    path = reference_dir / "tflm_models/hello_world/hello_world_int8.tflite"
    first = arena.search_arena(path)
    assert arena.search_arena(path.read_bytes()) is first  # same sha256, no new search
    assert arena.minimum_arena(path) == first.minimum


def test_recorded_figure_understates_a_tiny_model(reference_dir: Path) -> None:
    # TFLM's own figure is ~400 B short for hello_world: why the arena is searched.
    found = arena.search_arena(reference_dir / "tflm_models/hello_world/hello_world_int8.tflite")
    assert found.recorded is not None and found.minimum > found.recorded


@pytest.mark.parametrize("rel", sorted(REJECTED))
def test_rejected_models_are_named_with_the_reason(reference_dir: Path, rel: str) -> None:
    with pytest.raises(TFLiteModelError, match="TFLM interpreter rejects") as e:
        arena.search_arena(reference_dir / rel)
    assert REJECTED[rel] in str(e.value)


def test_a_crash_in_the_interpreter_stays_in_the_helper(reference_dir: Path) -> None:
    # dtln's LSTM kernels segfault in TFLM with arenas a little too small (seen at 5840 B).
    path = reference_dir / "tflm_models/dtln/dtln_noise_suppression.tflite"
    box = sandbox.Sandbox()
    try:
        with model_file(load(path)) as mf, pytest.raises(sandbox.SandboxCrash, match="SIG"):
            box.request("tflm_attempt", arena=5840, invoke=True, **mf.fields())
        # the next request gets a fresh helper
        with model_file(load(path)) as mf:
            assert box.request("tflm_attempt", arena=1 << 20, invoke=True, **mf.fields())["ok"]
    finally:
        box.close()


@pytest.mark.parametrize(
    ("text", "fraction", "extra"),
    [("4%", 0.04, 0), ("512", 0.0, 512), ("4% + 256", 0.04, 256), ("0", 0.0, 0), ("0x100", 0, 256)],
)
def test_margin_parse(text: str, fraction: float, extra: int) -> None:
    m = arena.ArenaMargin.parse(text)
    assert (m.fraction, m.extra_bytes) == (pytest.approx(fraction), extra)
    assert m.apply(1000) % 16 == 0 and m.apply(1000) >= 1000 + extra


@pytest.mark.parametrize("text", ["lots", "4%%", "-5%", "-1", "2000%"])
def test_bad_margins(text: str) -> None:
    with pytest.raises(UsageError, match="margin"):
        arena.ArenaMargin.parse(text)


def test_a_hung_request_times_out(reference_dir: Path) -> None:
    path = reference_dir / "tflm_models/pytorch_to_tflite/mobilenet_v2_quantized_1x3x224x224.tflite"
    box = sandbox.Sandbox()
    try:
        with (
            model_file(load(path)) as mf,
            pytest.raises(sandbox.SandboxCrash, match="within 0.05 s"),
        ):
            box.request("tflm_attempt", timeout_s=0.05, arena=1 << 23, invoke=True, **mf.fields())
        with model_file(load(path)) as mf:  # and the next request works again
            assert not box.request("tflm_attempt", arena=1024, invoke=False, **mf.fields())["ok"]
    finally:
        box.close()
