"""Inputs for the MLPerf Tiny ports, built from the third-party reference folder (by path).

The MLPerf Tiny datasets themselves (CIFAR-10, COCO, Speech Commands, ToyADMOS) are not
shipped; what the reference folder (``../shared/reference``) does hold is used as honestly as
possible. Every function takes that folder explicitly, is deterministic (seeded) and returns
float32 arrays in the PyTorch layout of the matching port:

* :func:`ad_windows` — **real data**: the 196 log-mel windows (640 values) of
  ``normal_id_01_00000000`` (ToyCar), the clip the reference AD quantization used first.
* :func:`kws_features` — **real speech, our features**: 1 s clips (TFLM's ``yes``/``no``/
  ``noise``/``silence`` test clips, SWW's ``marvin`` clip, sliding windows over SWW's 10 s
  speech+music mix), time-shifted, turned into 49×10 MFCCs with the MLPerf KWS front end
  (:func:`mfcc`, a numpy re-implementation of its ``tf.signal`` pipeline).
* :func:`image_crops` — **real photographs, not the benchmark's images**: random crops and
  flips of six natural images (Coral's cat, bird, sunflower, Grace Hopper; TFLM's person /
  no-person), resized to the port's input (IC 32×32 in 0..255, VWW 96×96 in 0..1).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from toolchain.errors import InputFileError

# --- AD ------------------------------------------------------------------------------

AD_WINDOWS = "mlperf_tiny/ad/normal_id_01_00000000_hist_librosa.bin"


def ad_windows(reference_dir: Path) -> np.ndarray:
    """(196, 640) float32 log-mel windows of a normal ToyCar clip (real data)."""
    path = _need(reference_dir, AD_WINDOWS)
    data = np.fromfile(path, dtype=np.float32)
    return data.reshape(-1, 640)


# --- KWS -----------------------------------------------------------------------------

SAMPLE_RATE = 16_000
FRAME_LENGTH = 480  # 30 ms
FRAME_STEP = 320  # 20 ms
FFT_LENGTH = 512
MEL_BINS = 40
MEL_LOW_HZ = 20.0
MEL_HIGH_HZ = 4000.0
MFCC_COUNT = 10

KWS_CLIPS = (
    "tflm_models/micro_speech/testdata/yes_1000ms.wav",
    "tflm_models/micro_speech/testdata/no_1000ms.wav",
    "tflm_models/micro_speech/testdata/noise_1000ms.wav",
    "tflm_models/micro_speech/testdata/silence_1000ms.wav",
    "mlperf_tiny/sww/marvin_617de221_0.wav",
)
KWS_LONG = "mlperf_tiny/sww/short_wav_easy10s.wav"
#: MLPerf KWS label order (index → word).
KWS_LABELS = (
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "silence", "unknown",
)  # fmt: skip


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def mel_matrix(
    num_mel: int = MEL_BINS,
    num_spec: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    low_hz: float = MEL_LOW_HZ,
    high_hz: float = MEL_HIGH_HZ,
) -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix`` (HTK mel, DC bin zeroed): (num_spec, num_mel)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, num_spec)[1:]
    spec_mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), num_mel + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (spec_mel - lower) / (center - lower)
    down = (upper - spec_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([np.zeros((1, num_mel)), weights]).astype(np.float32)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """The MLPerf KWS front end: 1 s of 16 kHz audio → (49, 10) MFCCs.

    Audio is divided by its maximum (as the reference data pipeline does), framed 480/320 with
    a periodic Hann window, |FFT-512|, 40 mel bins 20–4000 Hz, ``log(x + 1e-6)``, DCT-II
    scaled by ``1/sqrt(2·40)`` (``tf.signal.mfccs_from_log_mel_spectrograms``), first 10.
    """
    x = np.zeros(SAMPLE_RATE, np.float64)
    a = np.asarray(audio, np.float64)[:SAMPLE_RATE]
    x[: a.size] = a
    peak = x.max()
    if peak > 0:
        x = x / peak
    frames = 1 + (SAMPLE_RATE - FRAME_LENGTH) // FRAME_STEP
    idx = np.arange(FRAME_LENGTH)[None, :] + FRAME_STEP * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME_LENGTH) / FRAME_LENGTH)
    spec = np.abs(np.fft.rfft(x[idx] * window, n=FFT_LENGTH))
    log_mel = np.log(spec @ mel_matrix().astype(np.float64) + 1e-6)
    n = np.arange(MEL_BINS)
    k = np.arange(MFCC_COUNT)[:, None]
    dct = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * MEL_BINS))  # unnormalised DCT-II
    return (log_mel @ dct.T / np.sqrt(2.0 * MEL_BINS)).astype(np.float32)


def read_wav(path: Path) -> np.ndarray:
    """First channel of a 16-bit PCM WAV file as float in [-1, 1)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise InputFileError(f"{path}: only 16-bit PCM WAV is supported")
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return raw.reshape(-1, w.getnchannels())[:, 0].astype(np.float32) / 32768.0


def kws_clips(reference_dir: Path) -> list[tuple[str, np.ndarray]]:
    """(name, 1 s audio) pairs: the 1 s clips, then 1 s windows (hop 0.25 s) of the 10 s mix."""
    clips = [(Path(rel).stem, read_wav(_need(reference_dir, rel))) for rel in KWS_CLIPS]
    long = read_wav(_need(reference_dir, KWS_LONG))
    for start in range(0, long.size - SAMPLE_RATE + 1, SAMPLE_RATE // 4):
        clips.append((f"mix@{start / SAMPLE_RATE:.2f}s", long[start : start + SAMPLE_RATE]))
    return clips


def kws_features(reference_dir: Path, *, count: int, seed: int = 0) -> np.ndarray:
    """(count, 1, 49, 10) MFCCs of randomly time-shifted (±100 ms) real clips."""
    clips = [a for _, a in kws_clips(reference_dir)]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 1, 49, MFCC_COUNT), np.float32)
    for i in range(count):
        audio = clips[i % len(clips)]
        shift = int(rng.integers(-1600, 1601))
        out[i, 0] = mfcc(np.roll(audio, shift) if shift else audio)
    return out


# --- IC / VWW images -----------------------------------------------------------------

IMAGES = (
    "coral_test_data/cat.bmp",
    "coral_test_data/grace_hopper.bmp",
    "coral_test_data/bird.rgb",
    "coral_test_data/sunflower.rgb",
    "tflm_models/person_detection/testdata/person.bmp",
    "tflm_models/person_detection/testdata/no_person.bmp",
)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image

    if path.suffix == ".rgb":  # raw 224×224×3 bytes
        return np.fromfile(path, np.uint8).reshape(224, 224, 3)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_crops(
    reference_dir: Path, *, count: int, size: int, scale: float, seed: int = 0
) -> np.ndarray:
    """(count, 3, size, size) float32 crops (30–100 % of the short side), ×``scale``/255."""
    from PIL import Image

    images = [_load_image(_need(reference_dir, rel)) for rel in IMAGES]
    rng = np.random.default_rng(seed)
    out = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side])
        arr = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), np.float32)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out[i] = arr.transpose(2, 0, 1) * (scale / 255.0)
    return out


def ic_images(reference_dir: Path, *, count: int, seed: int = 0) -> np.ndarray:
    """IC (ResNet-8) inputs: (count, 3, 32, 32) raw pixel values 0..255."""
    return image_crops(reference_dir, count=count, size=32, scale=255.0, seed=seed)


def vww_images(reference_dir: Path, *, count: int, seed: int = 0) -> np.ndarray:
    """VWW (MobileNetV1-0.25) inputs: (count, 3, 96, 96) pixels scaled to 0..1."""
    return image_crops(reference_dir, count=count, size=96, scale=1.0, seed=seed)


def _need(reference_dir: Path, rel: str) -> Path:
    path = Path(reference_dir) / rel
    if not path.is_file():
        raise InputFileError(
            f"reference file missing: {path}",
            hint="point at the MLPerf Tiny reference folder (../shared/reference)",
        )
    return path
