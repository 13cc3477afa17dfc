"""The tensor arena: the smallest size that works, found by search, plus a stated margin.

TFLM's recorded figure (``arena_used_bytes()`` / the RecordingMicroAllocator total) can
undercount what a model really needs, so the minimum is *searched*: an arena size works when
the tflite-micro Python interpreter both allocates the model and invokes it once (zero
inputs). Sizes are multiples of :data:`ARENA_ALIGN` (16 bytes, TFLM's buffer alignment).

The search runs in the :mod:`sandbox` helper process (a crash cannot kill the caller; the
interpreter's "Failed to ..." lines are captured there). It starts from the recorded total
at a huge arena, brackets the boundary with exponentially growing steps (using the
"missing: N" figure TFLM prints to jump up), then bisects to 16 bytes; allocation-only
attempts find the allocation minimum, and invocation is checked from there upward. Results
are cached in-process by the model's sha256, so repeated calls are free.

The figure is measured on the 64-bit host. On a 32-bit MCU the same model needs *less*
(pointers and TFLM's structs are smaller): see docs/emit.md for the measured ratios and how
the default margin (:data:`DEFAULT_MARGIN`) covers the rest.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from toolchain.emit import sandbox
from toolchain.emit.model_input import ModelLike, load, model_file
from toolchain.errors import EmitError, TFLiteModelError, UsageError
from toolchain.tflite_model import TFLiteModel

log = logging.getLogger(__name__)

ARENA_ALIGN = 16
#: The first attempt: an arena so large that only a model TFLM rejects fails to allocate.
HUGE_ARENA = 256 * 1024 * 1024
_MISSING = re.compile(r"missing:? (\d+)")
_TOO_SMALL = ("Failed to allocate", "Failed to resize buffer", "missing", "Arena size is too small")


def _up(n: float) -> int:
    """Round up to a multiple of :data:`ARENA_ALIGN`."""
    return -(-math.ceil(n) // ARENA_ALIGN) * ARENA_ALIGN


#: the largest arena size emitted: the C constant is an ``unsigned int`` (32-bit on the MCU),
#: and TFLM takes the arena size as a ``size_t``; 2 GiB - 16 keeps it a valid signed int too
MAX_ARENA_BYTES = (1 << 31) - 16


@dataclass(frozen=True)
class ArenaMargin:
    """Headroom added to the searched minimum: ``fraction`` of it plus ``extra_bytes``, rounded up
    to 16 bytes. Parse one from text with :meth:`parse` (``"4%"``, ``"512"``, ``"4%+256"``)."""

    fraction: float = 0.0
    extra_bytes: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 10 or not 0 <= self.extra_bytes <= MAX_ARENA_BYTES:
            raise UsageError(
                f"arena margin {self} is out of range",
                hint="use a percentage from 0% to 1000% and/or a byte count from 0 to "
                f"{MAX_ARENA_BYTES:,} (the arena is a 32-bit C constant)",
            )

    def apply(self, minimum: int) -> int:
        """The recommended arena for a ``minimum``-byte requirement (a multiple of 16);
        :class:`UsageError` when that does not fit the emitted ``unsigned int`` constant."""
        size = _up(minimum * (1.0 + self.fraction) + self.extra_bytes)
        if size > MAX_ARENA_BYTES:
            raise UsageError(
                f"arena margin {self}: the arena would be {size:,} B, more than the "
                f"{MAX_ARENA_BYTES:,} B the C constant (and any microcontroller) can hold",
                hint="use a smaller --arena-margin (e.g. 4% or 4%+256)",
            )
        return size

    @classmethod
    def parse(cls, text: str) -> ArenaMargin:
        """``"4%"`` → 4 %; ``"512"`` → 512 bytes; ``"4%+256"`` → both; ``"0"`` → none."""
        fraction, nbytes = 0.0, 0
        try:
            for part in text.replace(" ", "").split("+"):
                if part.endswith("%"):
                    fraction += float(part[:-1]) / 100.0
                else:
                    nbytes += int(part, 0)
        except ValueError:
            raise UsageError(
                f"cannot read arena margin {text!r}",
                hint="write a percentage, a byte count, or both: 4%, 512, 4%+256",
            ) from None
        return cls(fraction, nbytes)

    def __str__(self) -> str:
        parts = []
        if self.fraction:
            parts.append(f"{self.fraction * 100:g}%")
        if self.extra_bytes or not parts:
            parts.append(f"{self.extra_bytes} B")
        return " + ".join(parts)


#: 4 %: the emitted arena stays within 1.05x of the host minimum, and covers what the docs
#: explain (kernel scratch differences between TFLM builds, small-model alignment slack).
DEFAULT_MARGIN = ArenaMargin(fraction=0.04)


@dataclass(frozen=True)
class ArenaSearch:
    """What the search found for one model (all sizes in bytes, multiples of 16)."""

    minimum: int  # smallest arena that allocates AND invokes
    allocate_minimum: int  # smallest arena that allocates
    recorded: int | None  # RecordingMicroAllocator total at a huge arena (TFLM's own figure)
    attempts: int  # interpreter constructions during the search
    seconds: float  # wall time of the search
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("seconds")  # keeps reports deterministic
        return d


_cache: dict[str, ArenaSearch] = {}
_cache_lock = threading.Lock()


def search_arena(model: ModelLike, *, timeout_s: float = sandbox.DEFAULT_TIMEOUT_S) -> ArenaSearch:
    """Find the smallest working arena of ``model`` (cached by sha256 for this process).

    ``timeout_s`` bounds each interpreter attempt. Raises
    :class:`~toolchain.errors.TFLiteModelError` when the interpreter rejects the model (the
    message names the op or reason TFLM gave), :class:`~toolchain.errors.InputFileError` /
    ``TFLiteModelError`` for a missing or malformed file, :class:`~toolchain.errors.EmitError`
    when the interpreter crashes or times out.
    """
    parsed = load(model)
    with _cache_lock:
        hit = _cache.get(parsed.sha256)
    if hit is not None:
        return hit
    t0 = time.monotonic()
    with model_file(parsed) as mf:
        result = _Search(parsed, mf, timeout_s).run()
    result = ArenaSearch(**{**asdict(result), "seconds": round(time.monotonic() - t0, 3)})
    log.info(
        "arena for %s: %d B (allocate %d B, recorded %s B) in %d attempts, %.2f s",
        parsed.source,
        result.minimum,
        result.allocate_minimum,
        result.recorded,
        result.attempts,
        result.seconds,
    )
    with _cache_lock:
        _cache[parsed.sha256] = result
    return result


def minimum_arena(model: ModelLike) -> int:
    """Smallest arena (bytes, multiple of 16) with which the host TFLM interpreter allocates
    and invokes ``model``. Cached by sha256; see :func:`search_arena` for what is raised."""
    return search_arena(model).minimum


def recommended_arena(model: ModelLike, *, margin: ArenaMargin | str = DEFAULT_MARGIN) -> int:
    """:func:`minimum_arena` plus ``margin`` (default :data:`DEFAULT_MARGIN`), a multiple of 16."""
    m = ArenaMargin.parse(margin) if isinstance(margin, str) else margin
    return m.apply(minimum_arena(model))


class _Search:
    def __init__(self, model: TFLiteModel, mf: sandbox.ModelFile, timeout_s: float) -> None:
        self.model = model
        self.mf = mf
        self.timeout_s = timeout_s
        self.attempts = 0
        self.last: dict[str, Any] = {}

    def attempt(self, arena: int, *, invoke: bool, record: bool = False) -> bool:
        self.attempts += 1
        try:
            reply = sandbox.shared().request(
                "tflm_attempt",
                timeout_s=self.timeout_s,
                arena=arena,
                invoke=invoke,
                record=record,
                **self.mf.fields(),
            )
        except sandbox.SandboxCrash as exc:
            if arena >= HUGE_ARENA:
                raise TFLiteModelError(
                    f"{self.model.source}: the TFLM interpreter crashed on this model",
                    hint=str(exc),
                ) from exc
            log.debug("arena %d: %s; counted as a failed attempt", arena, exc.message)
            reply = {"ok": False, "stage": "crash", "error": exc.message, "log": ""}
        if str(reply.get("error", "")).startswith("worker error"):
            raise EmitError(
                "the interpreter helper process failed: " + str(reply["error"])[-1500:],
                hint="check that tflite-micro and numpy are installed in this environment",
            )
        self.last = reply
        log.debug("arena %d invoke=%s -> %s", arena, invoke, reply.get("ok"))
        return bool(reply.get("ok"))

    def missing(self) -> int:
        m = _MISSING.search(str(self.last.get("log", "")))
        return int(m.group(1)) if m else 0

    def run(self) -> ArenaSearch:
        if not self.attempt(HUGE_ARENA, invoke=False, record=True):
            raise self.rejection("allocate")
        recorded = self.last.get("recorded")
        guess = _up(recorded) if recorded else HUGE_ARENA
        alloc_min = self.bisect(guess, HUGE_ARENA, invoke=False)
        if self.attempt(alloc_min, invoke=True):
            minimum = alloc_min
        elif not self.attempt(HUGE_ARENA, invoke=True):
            raise self.rejection("invoke")
        else:
            minimum = self.bisect(alloc_min + ARENA_ALIGN, HUGE_ARENA, invoke=True, lo=alloc_min)
        return ArenaSearch(
            minimum=minimum,
            allocate_minimum=alloc_min,
            recorded=recorded,
            attempts=self.attempts,
            seconds=0.0,
            sha256=self.model.sha256,
        )

    def bisect(self, guess: int, works: int, *, invoke: bool, lo: int = 0) -> int:
        """Smallest working size, given that ``works`` works and ``lo`` fails (0: nothing
        known). Brackets around ``guess`` with steps 16, 32, 64... then bisects."""
        hi = works
        step = ARENA_ALIGN
        probe = max(guess, lo + ARENA_ALIGN)
        if self.attempt(probe, invoke=invoke):
            hi = probe
            while hi - step > lo:  # walk down until a size fails
                probe = hi - step
                if not self.attempt(probe, invoke=invoke):
                    lo = probe
                    break
                hi = probe
                step *= 2
        else:
            lo = probe
            while True:  # walk up until a size works
                probe = max(lo + step, _up(lo + self.missing()))
                if probe >= hi:
                    break
                if self.attempt(probe, invoke=invoke):
                    hi = probe
                    break
                lo = probe
                step *= 2
        while hi - lo > ARENA_ALIGN:
            mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
            if self.attempt(mid, invoke=invoke):
                hi = mid
            else:
                lo = mid
        return hi

    def rejection(self, stage: str) -> TFLiteModelError:
        """The error for a model TFLM will not run even with a huge arena."""
        text = str(self.last.get("log", ""))
        lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        if any(k in text for k in _TOO_SMALL) and "registration" not in text:
            return TFLiteModelError(
                f"{self.model.source}: TFLM cannot {stage} this model even with a "
                f"{HUGE_ARENA // (1024 * 1024)} MiB arena: {'; '.join(lines[:3])}",
                hint="the model is far too large for a microcontroller",
            )
        reason = "; ".join(lines[:4]) or str(self.last.get("error", "unknown error"))
        customs = sorted({op.custom_code or "" for op in self.model.operators if op.is_custom})
        if "registration" in text and customs:
            reason = f"no TFLM kernel for custom op(s) {', '.join(customs)} ({reason})" + (
                " — the Ethos-U op needs TFLM built for an Ethos-U NPU"
                if "ethos-u" in customs
                else ""
            )
        return TFLiteModelError(
            f"{self.model.source}: the TFLM interpreter rejects this model at {stage}: {reason}",
            hint="TFLM cannot run it on any target; convert the model again with only "
            "TFLM-supported int8 builtin ops (ops used: " + ", ".join(self.model.op_names()) + ")",
        )
