"""Host tier: latency statistics and the shared benchmark result schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolchain.bench.result import BenchResult, OutputCheck
from toolchain.bench.stats import summarize, trust_warnings
from toolchain.errors import BenchmarkError


def test_summary_matches_numpy() -> None:
    x = np.random.default_rng(1).normal(100.0, 2.0, size=200)
    s = summarize(x.tolist(), "ms")
    assert s.n == 200 and s.unit == "ms"
    assert s.median == pytest.approx(np.median(x))
    assert s.mean == pytest.approx(x.mean())
    assert s.std == pytest.approx(x.std(ddof=1))
    assert s.p99 == pytest.approx(np.percentile(x, 99))
    assert s.ci_low <= s.median <= s.ci_high
    # the CI of the median of 200 samples with sigma 2 is well under +-1 around it
    assert s.ci_high - s.ci_low < 1.0


def test_bootstrap_is_deterministic() -> None:
    x = [5.0, 7.0, 6.0, 9.0, 5.5, 6.2, 6.1]
    assert summarize(x, "us") == summarize(x, "us")


def test_single_sample_and_constant_samples() -> None:
    s = summarize([42.0], "instructions")
    assert (s.median, s.ci_low, s.ci_high, s.std) == (42.0, 42.0, 42.0, 0.0)
    c = summarize([7.0] * 10, "instructions")
    assert c.std == 0.0 and c.ci_low == c.ci_high == 7.0
    assert trust_warnings(c) == []


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_bad_samples_raise(bad: list[float]) -> None:
    with pytest.raises(BenchmarkError):
        summarize(bad, "ms")


def test_trust_warnings_flag_noise_outliers_and_heat() -> None:
    rng = np.random.default_rng(0)
    noisy = summarize((10 + rng.uniform(0, 5, 50)).tolist(), "ms")
    assert any("noisy" in w for w in trust_warnings(noisy))
    spiky = summarize([10.0] * 30 + [50.0], "ms")
    assert any("outliers" in w for w in trust_warnings(spiky))
    steady = summarize([10.0] * 30, "ms")
    assert any("warmed" in w for w in trust_warnings(steady, temp_before_c=40, temp_after_c=52))
    assert trust_warnings(steady, temp_before_c=40, temp_after_c=41) == []
    assert any("too few" in w for w in trust_warnings(summarize([1.0, 1.0], "ms")))


def test_bench_result_round_trips_to_json(tmp_path: Path) -> None:
    r = BenchResult(
        runner="qemu",
        target="mps2-an386",
        model="m.tflite",
        model_sha256="ab" * 32,
        unit="instructions",
        samples=[100.0, 100.0, 100.0, 100.0, 100.0],
        warmup=1,
        output_check=OutputCheck("host tflite-micro", 10, 0, 0.0, True),
    )
    r.add_trust_warnings()
    path = r.write(tmp_path / "bench_report.json")
    d = json.loads(path.read_text())
    assert d["schema_version"] == 1 and d["runs"] == 5
    assert d["summary"]["median"] == 100.0 and d["summary"]["unit"] == "instructions"
    assert d["output_check"]["bit_exact"] is True
    with pytest.raises(ValueError):
        BenchResult("x", "t", "m", "", "parsecs", [1.0], 0)


def test_bootstrap_in_blocks_gives_the_same_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 14: 2,000 x runs floats at once was 4.7 GB at 100 k runs; blocks of rows give the
    # same random stream, so the same interval, in bounded memory
    from toolchain.bench import stats

    x = np.random.default_rng(5).standard_normal(3001)
    whole = stats.bootstrap_median_ci(x)
    monkeypatch.setattr(stats, "BOOT_BLOCK", 4 * x.size + 1)  # 4 rows per block, 500 blocks
    assert stats.bootstrap_median_ci(x) == whole
    monkeypatch.setattr(stats, "BOOT_BLOCK", 1)  # one row per block
    assert stats.bootstrap_median_ci(x) == whole
