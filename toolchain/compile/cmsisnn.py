"""Optional CMSIS-NN kernels: ``edgedeploy compile --cmsis-nn DIR``.

``DIR`` is the user's own checkout of Arm's CMSIS-NN (github.com/ARM-software/CMSIS-NN);
edgedeploy ships none of it. :func:`open_checkout` checks that it is one and that its API
version is one this glue was written and tested for; :func:`apply` then turns the operators
CMSIS-NN has into calls of ``edc_cmsisnn.c`` (our glue: it fills CMSIS-NN's argument structs
from the layer's constants and calls the library):

* ``CONV_2D`` (one group) → ``arm_convolve_wrapper_s8`` (1×1, 1×N and im2col paths inside),
* ``DEPTHWISE_CONV_2D`` → ``arm_depthwise_conv_wrapper_s8`` (3×3 and ``_opt`` paths inside),
* ``FULLY_CONNECTED`` → ``arm_fully_connected_wrapper_s8``,
* ``AVERAGE_POOL_2D`` / ``MAX_POOL_2D`` → ``arm_avgpool_s8`` / ``arm_max_pool_s8``,
* ``SOFTMAX`` → ``arm_softmax_s8``,
* ``ADD`` / ``MUL`` of same-shape operands → ``arm_elementwise_add_s8`` / ``_mul_s8``,

all int8, the way TFLM's ``cmsis_nn`` kernels call them (so results are bit-exact with
TFLM + CMSIS-NN, which is bit-exact with TFLM's reference kernels). The rest keeps our own
kernels. Each call's scratch buffer is sized at compile time by the library itself: a small
host program built with the host C compiler against the checkout calls the
``*_get_buffer_size_dsp`` / ``_mve`` / plain variant that matches the target's CPU, and the
size is planned into the static arena. The generated ``<name>_init()`` checks every planned
size against the library's own answer on the device and fails when one is short.

The firmware build compiles the checkout's int8 sources (:func:`source_files`) into the image
(``CMSIS_NN`` in the firmware's ``config.mk``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolchain.compile.ir import ConstArray, Graph, Op
from toolchain.errors import CompileError, UsageError

if TYPE_CHECKING:
    from toolchain.targets import Target

log = logging.getLogger(__name__)

#: ``$Revision`` majors of ``Include/arm_nnfunctions.h`` whose API this glue matches. Tested
#: with V.19.1.0: CMSIS-NN 4ab83cc3 (v7.0.0-33-g4ab83cc3, the commit TFLM 90b983c2 downloads).
SUPPORTED_REVISIONS = frozenset({19})
TESTED = "CMSIS-NN 4ab83cc3 (git describe v7.0.0-33-g4ab83cc3; arm_nnfunctions.h V.19.1.0)"
#: functions the glue calls (their declarations must be in arm_nnfunctions.h)
REQUIRED_FUNCS = (
    "arm_convolve_wrapper_s8",
    "arm_depthwise_conv_wrapper_s8",
    "arm_fully_connected_wrapper_s8",
    "arm_avgpool_s8",
    "arm_max_pool_s8",
    "arm_softmax_s8",
    "arm_elementwise_add_s8",
    "arm_elementwise_mul_s8",
    "arm_convolve_wrapper_s8_get_buffer_size_dsp",
    "arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp",
    "arm_fully_connected_s8_get_buffer_size_dsp",
    "arm_avgpool_s8_get_buffer_size_dsp",
)
#: source folders (under ``Source/``) the firmware compiles; float files are left out
SOURCE_DIRS = (
    "ConvolutionFunctions",
    "FullyConnectedFunctions",
    "PoolingFunctions",
    "SoftmaxFunctions",
    "BasicMathFunctions",
    "NNSupportFunctions",
)
#: the host program's sources: the *_get_buffer_size functions only
_SIZE_SOURCES = (
    "ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
    "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
    "FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c",
    "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c",
)
_REVISION = re.compile(r"\$Revision:\s*V\.?(\d+)\.(\d+)\.(\d+)")
_HINT = "pass the root of a checkout of github.com/ARM-software/CMSIS-NN (" + TESTED + ")"

KERNEL = "edc_cmsisnn"
#: the operators CMSIS-NN can take (``ops="all"``)
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
       "SOFTMAX", "ADD", "MUL")  # fmt: skip
#: the static ``ops="auto"`` rule on DSP cores (without measurements, see :mod:`.perlayer`,
#: which chooses per layer by measuring): where CMSIS-NN measured faster than our own kernels on mps2-an386 (M4F,
#: benchmarks/results/cmsisnn_qemu.json, per layer): average pooling on all five models and
#: IC's same-shape residual ADDs (1.33 M vs 1.68 M instructions for the first); our fast
#: conv/depthwise/FC kernels and softmax measured faster everywhere, and MUL / MAX_POOL_2D were
#: not measured (no model has them)
OPS_AUTO = frozenset({"AVERAGE_POOL_2D", "ADD"})
#: funcs of the glue that may write their output over a same-shape operand (see inplace.py)
IN_PLACE_FUNCS = frozenset({"edc_cmsis_add_s8", "edc_cmsis_mul_s8"})


@dataclass(frozen=True)
class Checkout:
    """A checked CMSIS-NN checkout: its root, the header revision and ``git describe``."""

    path: Path
    revision: str  # e.g. "19.1.0"
    describe: str | None  # git describe --tags --always, when it is a git checkout

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "revision": self.revision, "describe": self.describe}


def open_checkout(path: str | os.PathLike[str]) -> Checkout:
    """Check that ``path`` is a CMSIS-NN checkout of a supported version.

    Raises UsageError (what was wrong and what to do) when the folder is missing, is not a
    CMSIS-NN checkout, or its ``arm_nnfunctions.h`` revision is not in
    :data:`SUPPORTED_REVISIONS` or lacks a function the glue calls.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"--cmsis-nn {path}: no such folder", hint=_HINT)
    root = root.resolve()
    header = root / "Include" / "arm_nnfunctions.h"
    missing = [
        rel
        for rel in ("Include/arm_nnfunctions.h", *(f"Source/{s}" for s in _SIZE_SOURCES))
        if not (root / rel).exists()
    ]
    if missing:
        raise UsageError(
            f"--cmsis-nn {path}: not a CMSIS-NN checkout (missing {', '.join(missing[:3])})",
            hint=_HINT,
        )
    try:
        text = header.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"--cmsis-nn {path}: cannot read {header}: {exc}", hint=_HINT) from exc
    m = _REVISION.search(text[:4000])
    if m is None:
        raise UsageError(
            f"--cmsis-nn {path}: unknown CMSIS-NN version (no $Revision line in "
            "Include/arm_nnfunctions.h)",
            hint=_HINT,
        )
    revision = ".".join(m.groups())
    if int(m.group(1)) not in SUPPORTED_REVISIONS:
        raise UsageError(
            f"--cmsis-nn {path}: unsupported CMSIS-NN version (arm_nnfunctions.h V.{revision}; "
            f"supported: V.{'/'.join(str(r) for r in sorted(SUPPORTED_REVISIONS))}.x)",
            hint="check out a supported version: " + TESTED,
        )
    absent = [f for f in REQUIRED_FUNCS if not re.search(rf"\b{f}\s*\(", text)]
    if absent:
        raise UsageError(
            f"--cmsis-nn {path}: arm_nnfunctions.h V.{revision} lacks {', '.join(absent[:3])}",
            hint="check out a supported version: " + TESTED,
        )
    return Checkout(root, revision, _describe(root))


def _describe(root: Path) -> str | None:
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        r = subprocess.run(
            ["git", "-C", str(root), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def source_files(checkout: Checkout | Path) -> list[Path]:
    """The checkout's C sources the firmware compiles (int8 and support code, no float)."""
    root = checkout.path if isinstance(checkout, Checkout) else Path(checkout)
    out: list[Path] = []
    for d in SOURCE_DIRS:
        out += [
            p
            for p in sorted((root / "Source" / d).glob("*.c"))
            if not re.search(r"_f(16|32)\.c$", p.name)
        ]
    return out


def variant(target: str | Target | None) -> str:
    """Which ``*_get_buffer_size`` variant matches the target's CPU: ``_mve`` (Helium),
    ``_dsp`` (the DSP extension) or ``""`` (plain C: no target, or a core without DSP)."""
    if target is None:
        return ""
    from toolchain.targets import load_target

    cpu = (load_target(target) if isinstance(target, str) else target).cpu
    if cpu.core in ("cortex-m55", "cortex-m85"):
        return "_mve"
    return "_dsp" if cpu.dsp else ""


# --- the layers --------------------------------------------------------------------------------


def _i32(values: Any, what: str) -> ConstArray:
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < -(2**31) or v.max() > 2**31 - 1):
        raise _Keep(f"{what} does not fit in int32")
    return ConstArray("int32_t", v.astype(np.int32), what)


class _Keep(Exception):
    """This layer keeps our own kernel."""


def _per_channel(f: dict[str, Any], n: int) -> tuple[ConstArray, ConstArray]:
    mult, shift = f["mult"], f["shift"]
    assert isinstance(mult, ConstArray) and isinstance(shift, ConstArray)
    m = mult.values.astype(np.int64).reshape(-1)
    s = shift.values.astype(np.int64).reshape(-1)
    if m.size == 1:
        m = np.full(n, int(m[0]))
    if s.size == 1:
        s = np.full(n, int(s[0]))
    return _i32(m, "mult"), _i32(s, "shift")


def _plain_bias(f: dict[str, Any], in_offset: int, w: np.ndarray) -> ConstArray:
    """The layer's original int32 bias: our lowering folds the input offset into it."""
    folded = f.get("bias_folded")
    if not isinstance(folded, ConstArray):
        folded = f["bias"]
    assert isinstance(folded, ConstArray)
    sums = w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
    return _i32(folded.values.astype(np.int64) - in_offset * sums, "bias")


def _conv(graph: Graph, op: Op) -> None:
    f = op.fields
    if f["groups"] != 1:
        raise _Keep("grouped convolution")
    w = f["weights"]
    assert isinstance(w, ConstArray)
    in_offset = -graph.tensors[op.inputs[0]].zero_point
    mult, shift = _per_channel(f, int(f["out_c"]))  # type: ignore[arg-type]
    op.fields = {
        "batches": f["batches"], "in_h": f["in_h"], "in_w": f["in_w"], "in_c": f["in_c"],
        "out_h": f["out_h"], "out_w": f["out_w"], "out_c": f["out_c"],
        "k_h": f["k_h"], "k_w": f["k_w"], "depth_mult": 1,
        "stride_h": f["stride_h"], "stride_w": f["stride_w"],
        "dil_h": f["dil_h"], "dil_w": f["dil_w"], "pad_h": f["pad_h"], "pad_w": f["pad_w"],
        "in_offset": in_offset, "out_offset": f["out_offset"],
        "act_min": f["act_min"], "act_max": f["act_max"], "scratch_bytes": 0,
        "weights": ConstArray("int8_t", w.values, "weights (OHWI)"),
        "bias": _plain_bias(f, in_offset, w.values), "mult": mult, "shift": shift,
    }  # fmt: skip
    op.func, op.struct = "edc_cmsis_conv_s8", "edc_cmsis_conv_params"


def _dwconv(graph: Graph, op: Op) -> None:
    f = op.fields
    w = f["weights"]  # our lowering: channel first, oc x kh x kw
    assert isinstance(w, ConstArray)
    oc, kh, kw = w.values.shape
    in_offset = -graph.tensors[op.inputs[0]].zero_point
    mult, shift = _per_channel(f, oc)
    hwc = np.ascontiguousarray(w.values.transpose(1, 2, 0))  # TFLite's 1 x kh x kw x oc
    op.fields = {
        "batches": f["batches"], "in_h": f["in_h"], "in_w": f["in_w"], "in_c": f["in_c"],
        "out_h": f["out_h"], "out_w": f["out_w"], "out_c": oc,
        "k_h": kh, "k_w": kw, "depth_mult": f["depth_mult"],
        "stride_h": f["stride_h"], "stride_w": f["stride_w"],
        "dil_h": f["dil_h"], "dil_w": f["dil_w"], "pad_h": f["pad_h"], "pad_w": f["pad_w"],
        "in_offset": in_offset, "out_offset": f["out_offset"],
        "act_min": f["act_min"], "act_max": f["act_max"], "scratch_bytes": 0,
        "weights": ConstArray("int8_t", hwc, "weights (1HWC)"),
        "bias": _plain_bias(f, in_offset, w.values), "mult": mult, "shift": shift,
    }  # fmt: skip
    op.func, op.struct = "edc_cmsis_dwconv_s8", "edc_cmsis_conv_params"


def _fc(graph: Graph, op: Op) -> None:
    f = op.fields
    w = f["weights"]
    assert isinstance(w, ConstArray)
    in_offset = -graph.tensors[op.inputs[0]].zero_point
    n_out = int(f["out_depth"])  # type: ignore[arg-type]
    per_channel = int(f["per_channel"])  # type: ignore[arg-type]
    mult, shift = _per_channel(f, n_out if per_channel else 1)
    op.fields = {
        "batches": f["batches"], "in_depth": f["in_depth"], "out_depth": n_out,
        "per_channel": per_channel, "in_offset": in_offset, "out_offset": f["out_offset"],
        "act_min": f["act_min"], "act_max": f["act_max"], "scratch_bytes": 0,
        "weights": w, "bias": _plain_bias(f, in_offset, w.values), "mult": mult, "shift": shift,
    }  # fmt: skip
    op.func, op.struct = "edc_cmsis_fc_s8", "edc_cmsis_fc_params"


def _pool(graph: Graph, op: Op) -> None:
    f = dict(op.fields)
    f["scratch_bytes"] = 0
    op.fields = f
    op.func = "edc_cmsis_avgpool_s8" if op.kind == "AVERAGE_POOL_2D" else "edc_cmsis_maxpool_s8"
    op.struct = "edc_cmsis_pool_params"


def _softmax(graph: Graph, op: Op) -> None:
    op.func, op.struct = "edc_cmsis_softmax_s8", "edc_cmsis_softmax_params"


def _eltwise(graph: Graph, op: Op) -> None:
    f = op.fields
    if f["broadcast"]:
        raise _Keep("broadcast operands (CMSIS-NN's element-wise kernels need equal shapes)")
    keep = ("size", "in1_offset", "in2_offset", "out_offset", "left_shift", "in1_mult",
            "in1_shift", "in2_mult", "in2_shift", "out_mult", "out_shift", "act_min", "act_max")  # fmt: skip
    op.fields = {k: f[k] for k in keep}
    op.func = "edc_cmsis_add_s8" if op.kind == "ADD" else "edc_cmsis_mul_s8"
    op.struct = "edc_cmsis_eltwise_params"


_TAKE = {
    "edc_conv_s8": _conv,
    "edc_dwconv_s8": _dwconv,
    "edc_fc_s8": _fc,
    "edc_avgpool_s8": _pool,
    "edc_maxpool_s8": _pool,
    "edc_softmax_s8": _softmax,
    "edc_add_s8": _eltwise,
    "edc_mul_s8": _eltwise,
}
#: the C function checking a layer's planned scratch (init) and the host program's call
_SIZE_FUNCS = {
    "edc_cmsis_conv_s8": "edc_cmsis_conv_buffer_size",
    "edc_cmsis_dwconv_s8": "edc_cmsis_dwconv_buffer_size",
    "edc_cmsis_fc_s8": "edc_cmsis_fc_buffer_size",
    "edc_cmsis_avgpool_s8": "edc_cmsis_avgpool_buffer_size",
}
#: kernels whose last argument is a scratch pointer (NULL when the size is 0)
SCRATCH_FUNCS = frozenset({*_SIZE_FUNCS, "edc_cmsis_maxpool_s8"})


def parse_ops(spec: str) -> frozenset[str]:
    """``--cmsis-nn-ops``: ``all`` (every operator CMSIS-NN has: :data:`OPS`), ``auto``
    (:data:`OPS_AUTO` here; :func:`toolchain.compile.compile_model` then chooses per layer,
    see :mod:`.perlayer`) or a comma-separated list of operator names out of :data:`OPS`."""
    s = spec.strip()
    if s.lower() == "all":
        return frozenset(OPS)
    if s.lower() == "auto":
        return OPS_AUTO
    names = [n.strip().upper() for n in s.split(",") if n.strip()]
    bad = [n for n in names if n not in OPS]
    if bad or not names:
        raise UsageError(
            f"--cmsis-nn-ops {spec!r}: " + (f"unknown operator {bad[0]}" if bad else "empty"),
            hint="all, auto or a comma-separated list of " + ", ".join(OPS),
        )
    return frozenset(names)


def apply(
    graph: Graph,
    checkout: Checkout,
    target: str | Target | None,
    ops: frozenset[str] = frozenset(OPS),
    indices: frozenset[int] | None = None,
) -> list[int]:
    """Swap CMSIS-NN calls in for the operators it has (in place; only those whose kind is
    in ``ops`` and, when ``indices`` is given, whose op index is in it: the per-layer choice
    of :mod:`.perlayer`), size their scratch buffers with the library
    (:func:`buffer_sizes`); returns the op indices taken."""
    taken: list[int] = []
    for op in graph.ops:
        fn = _TAKE.get(op.func)
        if fn is None or not op.kernel or op.parts or op.kind not in ops:
            continue
        if indices is not None and op.index not in indices:
            continue
        old = (op.kernel, op.func, op.struct, dict(op.fields))
        try:
            fn(graph, op)
        except _Keep as why:
            op.kernel, op.func, op.struct, op.fields = old
            log.info("op %d %s keeps %s: %s", op.index, op.kind, op.func, why)
            continue
        op.kernel = KERNEL
        op.status = True
        op.scratch_arg = op.func in SCRATCH_FUNCS
        op.scratch_check = _SIZE_FUNCS.get(op.func, "")
        taken.append(op.index)
    sized = [op for op in graph.ops if op.kernel == KERNEL and op.scratch_check]
    if sized:
        sizes = buffer_sizes(checkout, sized, variant(target))
        for op, n in zip(sized, sizes, strict=True):
            op.fields["scratch_bytes"] = n
            op.scratch_bytes = n
    return taken


# --- scratch sizes from the library itself --------------------------------------------------


def _size_call(op: Op, var: str) -> str:
    """One C statement of the host program printing ``op``'s scratch size."""
    f = {k: v for k, v in op.fields.items() if isinstance(v, int)}
    if op.func in ("edc_cmsis_conv_s8", "edc_cmsis_dwconv_s8"):
        common = (
            f"p.input_offset = {f['in_offset']}; p.output_offset = {f['out_offset']}; "
            f"p.stride.h = {f['stride_h']}; p.stride.w = {f['stride_w']}; "
            f"p.padding.h = {f['pad_h']}; p.padding.w = {f['pad_w']}; "
            f"p.dilation.h = {f['dil_h']}; p.dilation.w = {f['dil_w']}; "
            f"p.activation.min = {f['act_min']}; p.activation.max = {f['act_max']};"
        )
        i = f"{{{f['batches']}, {f['in_h']}, {f['in_w']}, {f['in_c']}}}"
        o = f"{{{f['batches']}, {f['out_h']}, {f['out_w']}, {f['out_c']}}}"
        if op.func == "edc_cmsis_conv_s8":
            w = f"{{{f['out_c']}, {f['k_h']}, {f['k_w']}, {f['in_c']}}}"
            return (
                f"{{ cmsis_nn_conv_params p; memset(&p, 0, sizeof p); {common} "
                f"cmsis_nn_dims i = {i}, w = {w}, o = {o}; "
                f'printf("%ld\\n", (long)arm_convolve_wrapper_s8_get_buffer_size{var}'
                "(&p, &i, &w, &o)); }"
            )
        w = f"{{1, {f['k_h']}, {f['k_w']}, {f['out_c']}}}"
        return (
            f"{{ cmsis_nn_dw_conv_params p; memset(&p, 0, sizeof p); {common} "
            f"p.ch_mult = {f['depth_mult']}; cmsis_nn_dims i = {i}, w = {w}, o = {o}; "
            f'printf("%ld\\n", (long)arm_depthwise_conv_wrapper_s8_get_buffer_size{var}'
            "(&p, &i, &w, &o)); }"
        )
    if op.func == "edc_cmsis_fc_s8":
        return (
            f"{{ cmsis_nn_dims w = {{{f['in_depth']}, 1, 1, {f['out_depth']}}}; "
            f'printf("%ld\\n", (long)arm_fully_connected_s8_get_buffer_size{var}(&w)); }}'
        )
    assert op.func == "edc_cmsis_avgpool_s8"
    return (
        f'{{ printf("%ld\\n", (long)arm_avgpool_s8_get_buffer_size{var}'
        f"({f['out_w']}, {f['channels']})); }}"
    )


def buffer_sizes(checkout: Checkout, ops: list[Op], var: str) -> list[int]:
    """The scratch bytes CMSIS-NN asks for, per op, for the CPU ``var`` stands for
    (:func:`variant`): a host program built against the checkout's ``*_get_buffer_size``
    sources with the host C compiler (``CC``, else cc/gcc/clang) prints them."""
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        raise CompileError(
            "--cmsis-nn sizes CMSIS-NN's scratch buffers with a host C compiler; none found",
            hint="install gcc (or set CC)",
        )
    body = "\n".join("  " + _size_call(op, var) for op in ops)
    prog = (
        '#include <stdio.h>\n#include <string.h>\n#include "arm_nnfunctions.h"\n'
        f"int main(void)\n{{\n{body}\n  return 0;\n}}\n"
    )
    srcs = [str(checkout.path / "Source" / s) for s in _SIZE_SOURCES]
    with tempfile.TemporaryDirectory(prefix="edc-cmsisnn-") as tmp:
        c = Path(tmp) / "sizes.c"
        exe = Path(tmp) / "sizes"
        c.write_text(prog, encoding="utf-8")
        cmd = [cc, "-std=gnu11", "-O0", "-w", f"-I{checkout.path / 'Include'}", str(c), *srcs,
               "-o", str(exe)]  # fmt: skip
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if r.returncode != 0:
                raise CompileError(
                    "building the CMSIS-NN buffer-size program against "
                    f"{checkout.path} failed:\n{(r.stderr or r.stdout)[-1500:]}",
                    hint="check the checkout (" + TESTED + ")",
                )
            run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompileError(f"sizing CMSIS-NN's scratch buffers failed: {exc}") from exc
    lines = run.stdout.split()
    if run.returncode != 0 or len(lines) != len(ops):
        raise CompileError(
            f"the CMSIS-NN buffer-size program failed (exit {run.returncode}, "
            f"{len(lines)} of {len(ops)} sizes)"
        )
    sizes = [int(x) for x in lines]
    if any(n < 0 for n in sizes):
        raise CompileError(f"CMSIS-NN returned a negative buffer size: {sizes}")
    return sizes
