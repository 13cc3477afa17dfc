"""The C writer: a lowered, planned graph → ``<name>.h``, ``<name>.c``, ``<name>_weights.c``.

Only formatting happens here: every number comes from :mod:`.lower` and :mod:`.planner`.
The model file reads like a hand-written one: a comment names each layer above its kernel
call, parameter structs use designated initializers, and the arena offsets are literals.
Output is deterministic (same model, same name → same bytes).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from toolchain.compile import patch as _patch
from toolchain.compile.ir import CTYPES, DTYPE_CODES, ConstArray, Graph, Op, Split, Tensor
from toolchain.compile.planner import Plan, band_key, scratch_key

#: Kernel sources every model needs, besides the ones its operators use.
COMMON_KERNEL_FILES = ("edc_runtime.h", "edc_fixedpoint.h", "edc_simd.h")


def kernel_dir() -> Path:
    return Path(str(resources.files("toolchain.compile") / "kernels"))


def kernel_files(graph: Graph) -> list[str]:
    """File names (in :func:`kernel_dir`) to copy for this graph."""
    names = list(COMMON_KERNEL_FILES)
    for stem in graph.kernels():
        names += [f"{stem}.h", f"{stem}.c"]
    return names


#: A kernel file whose operators do less than this share of the model's work (multiply-adds,
#: or elements touched where there are no weights) is built for size (-Os) in the firmware:
#: its -O2 unrolling buys < ~0.1 % of the instructions (measured: benchmarks/README.md).
SIZE_SHARE = 0.01
#: Multiply-adds one element of a weightless operator (ADD, pooling, softmax) is counted as.
ELEMENT_WORK = 8


def _op_work(graph: Graph, op: Op) -> int:
    """Rough work of one operator: multiply-adds for an op with int8 weights (output
    elements x weights per output channel), else ``ELEMENT_WORK`` x the elements it reads or
    writes (each is requantized: measured, IC's ADDs built -Os cost +2.3 % instructions)."""
    out = sum(int(np.prod(graph.tensors[t].shape)) for t in op.outputs)
    ins = sum(int(np.prod(graph.tensors[t].shape)) for t in op.inputs if t in graph.tensors)
    work = ELEMENT_WORK * max(out, ins, 1)
    for call in op.calls():
        for v in call.fields.values():
            if isinstance(v, ConstArray) and v.ctype == "int8_t" and v.values.size > 64:
                oc = graph.tensors[op.outputs[0]].shape[-1] if op.outputs else 1
                work = max(work, out * (int(v.values.size) // max(int(oc), 1)))
    return work


def size_files(graph: Graph, share: float = SIZE_SHARE) -> list[str]:
    """Kernel ``.c`` files (sorted) whose operators together do less than ``share`` of the
    graph's work: the firmware builds them -Os (``MODEL_OS_FILES`` in ``<name>.mk``)."""
    per: dict[str, int] = {}
    for op in graph.ops:
        if op.kernel:
            per[op.kernel] = per.get(op.kernel, 0) + _op_work(graph, op)
    total = sum(per.values()) or 1
    return sorted(f"{k}.c" for k, w in per.items() if w < share * total)


def _c_float(x: float) -> str:
    s = f"{float(np.float32(x)):.9g}"
    if "." not in s and "e" not in s and "inf" not in s and "nan" not in s:
        s += ".0"
    return s + "f"


def _comment(s: str) -> str:
    return s.replace("*/", "* /").replace("/*", "/ *")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


class _Consts:
    """Deduplicated constant arrays: one C array per distinct (type, bytes), named after
    its first user (``<model>_op3_weights``: operator 3's ``weights`` field)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, bytes], str] = {}
        self.arrays: list[tuple[str, ConstArray, list[str]]] = []

    def name(self, arr: ConstArray, user: str, first_name: str) -> str:
        """The C name of ``arr``: ``first_name`` unless an equal array was named before."""
        key = arr.key()
        if key not in self.by_key:
            n = first_name
            self.by_key[key] = n
            self.arrays.append((n, arr, []))
        n = self.by_key[key]
        for name, _, users in self.arrays:
            if name == n:
                users.append(user)
        return n

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, a, _ in self.arrays)


def _values(arr: ConstArray) -> str:
    flat = np.ascontiguousarray(arr.values).reshape(-1)
    per_line = {"int8_t": 16, "uint8_t": 16, "int64_t": 4}.get(arr.ctype, 8)
    lines = []
    for i in range(0, flat.size, per_line):
        lines.append("  " + ", ".join(str(int(v)) for v in flat[i : i + per_line]) + ",")
    return "\n".join(lines)


def _info(t: Tensor) -> str:
    dims = list(t.shape) + [0] * (6 - len(t.shape))
    return (
        f"  {{{DTYPE_CODES[t.dtype]}, {len(t.shape)}, {{{', '.join(str(d) for d in dims)}}}, "
        f"{_c_float(t.scale)}, {t.zero_point}, {t.nbytes}u}}, "
        f'/* "{_comment(t.name)}" {t.dtype} {_shape(t.shape)} */'
    )


class CWriter:
    """Renders the three model files for one graph and plan."""

    def __init__(self, graph: Graph, plan: Plan, name: str, source: str) -> None:
        self.g = graph
        self.plan = plan
        self.name = name
        self.upper = name.upper()
        self.source = source
        self.consts = _Consts()
        self._structs = [self._struct(op) for op in graph.ops]

    # --- helpers -----------------------------------------------------------------------------

    def _ptr(self, t: int, const: bool) -> str:
        ct = CTYPES[self.g.tensors[t].dtype]
        q = "const " if const else ""
        return f"({q}{ct} *)({self.name}_arena + {self.plan.offset(self.g, t)})"

    def _label(self, op: Op) -> str:
        ins = ", ".join(_shape(self.g.tensors[t].shape) for t in op.inputs)
        outs = ", ".join(_shape(self.g.tensors[t].shape) for t in op.outputs)
        out_name = self.g.tensors[op.outputs[0]].name if op.outputs else ""
        return _comment(f'{op.index}: {op.kind} "{out_name}" {op.summary}: {ins} -> {outs}')

    def _struct(self, op: Op) -> str:
        calls = op.calls()
        blocks = []
        for k, call in enumerate(calls):
            sname = self._sname(op, k)
            lines = [f"static const {call.struct} {sname} = {{"]
            for f, v in call.fields.items():
                if v is None:
                    lines.append(f"    .{f} = NULL,")
                elif isinstance(v, ConstArray):
                    n = self.consts.name(v, f"op {op.index} {op.kind} {v.what}", f"{sname}_{f}")
                    lines.append(f"    .{f} = {n},")
                elif isinstance(v, list):
                    lines.append(f"    .{f} = {{{', '.join(str(int(x)) for x in v)}}},")
                else:
                    lines.append(f"    .{f} = {int(v)},")
            lines.append("};")
            blocks.append("\n".join(lines))
        return "\n".join(blocks)

    def _sname(self, op: Op, k: int) -> str:
        return (
            f"{self.name}_op{op.index}" if len(op.calls()) == 1 else f"{self.name}_op{op.index}_{k}"
        )

    # --- files -------------------------------------------------------------------------------

    def header(self) -> str:
        g, N, n = self.g, self.upper, self.name
        guard = f"{N}_H_"
        io = []
        for kind, ts in (("input", g.inputs), ("output", g.outputs)):
            for i, t in enumerate(ts):
                ten = g.tensors[t]
                io.append(
                    f'/* {kind} {i}: "{_comment(ten.name)}" {ten.dtype} {_shape(ten.shape)}, '
                    f"scale {_c_float(ten.scale)[:-1]}, zero point {ten.zero_point} */"
                )
        return "\n".join(
            [
                f"/* {n}: the model {_comment(self.source)} as plain C (edgedeploy compile).",
                f" * sha256 of the .tflite: {g.model_sha256}",
                " * Generated file: do not edit. */",
                f"#ifndef {guard}",
                f"#define {guard}",
                "",
                '#include "edc_runtime.h"',
                "",
                "#ifdef __cplusplus",
                'extern "C" {',
                "#endif",
                "",
                f"#define {N}_ARENA_BYTES {self.plan.arena_bytes}u",
                f"#define {N}_NUM_INPUTS {len(g.inputs)}",
                f"#define {N}_NUM_OUTPUTS {len(g.outputs)}",
                f"#define {N}_NUM_OPS {len(g.ops)}",
                "/* 1: the arena keeps the inputs intact through invoke (compiled with keep_inputs):",
                " * write them once, invoke many times. 0: write every input before each invoke. */",
                f"#define {N}_INPUTS_KEPT {int(g.keep_inputs)}",
                "",
                *io,
                f"extern const edc_tensor_info {n}_inputs[{N}_NUM_INPUTS];",
                f"extern const edc_tensor_info {n}_outputs[{N}_NUM_OUTPUTS];",
                f"extern const char *const {n}_op_names[{N}_NUM_OPS];",
                f"extern const uint8_t {n}_model_sha256[32];",
                "",
                "/* 0 on success; idempotent. */",
                f"int {n}_init(void);",
                "/* Pointers into the static arena (NULL when i is out of range). The arena is reused",
                " * between operators: write every input before each call of invoke. */",
                f"void *{n}_input(int i);",
                f"const void *{n}_output(int i);",
                "/* Runs the model once; 0 on success. */",
                f"int {n}_invoke(void);",
                "",
                "#ifdef __cplusplus",
                "}",
                "#endif",
                "",
                f"#endif /* {guard} */",
                "",
            ]
        )

    def model_c(self) -> str:
        g, N, n = self.g, self.upper, self.name
        out = [
            f"/* {n}: the graph of {_comment(self.source)} as straight-line kernel calls.",
            " * Generated by edgedeploy compile: do not edit. Shapes, quantization parameters and",
            " * arena offsets are constants computed on the host. */",
            f'#include "{n}.h"',
            "",
        ]
        out += [f'#include "{stem}.h"' for stem in g.kernels()]
        if g.splits():
            out.append("#include <string.h>")
        out += ["", f"/* Constant data (in {n}_weights.c). */"]
        for cname, arr, _ in self.consts.arrays:
            out.append(f"extern const {arr.ctype} {cname}[{arr.values.size}];")
        out += [
            "",
            f"static uint8_t {n}_arena[{N}_ARENA_BYTES] EDC_ALIGNED(16);",
            "",
            f"const edc_tensor_info {n}_inputs[{N}_NUM_INPUTS] = {{",
            *[_info(g.tensors[t]) for t in g.inputs],
            "};",
            f"const edc_tensor_info {n}_outputs[{N}_NUM_OUTPUTS] = {{",
            *[_info(g.tensors[t]) for t in g.outputs],
            "};",
            f"const char *const {n}_op_names[{N}_NUM_OPS] = {{",
            *[f'  "{op.kind}",' for op in g.ops],
            "};",
            f"const uint8_t {n}_model_sha256[32] = {{",
            "  " + ", ".join(f"0x{b:02x}" for b in bytes.fromhex(g.model_sha256)[:16]) + ",",
            "  " + ", ".join(f"0x{b:02x}" for b in bytes.fromhex(g.model_sha256)[16:]) + ",",
            "};",
            "",
            "/* Layer parameters. */",
        ]
        for op, struct in zip(g.ops, self._structs, strict=True):
            if struct:
                out += [f"/* {self._label(op)} */", struct, ""]
        for j, sp in enumerate(g.splits()):
            out += self._split_table(sp, j)
        out += self._init()
        for kind, ts, q in (("input", g.inputs, ""), ("output", g.outputs, "const ")):
            out.append(f"{q}void *{n}_{kind}(int i) {{")
            out.append("  switch (i) {")
            for i, t in enumerate(ts):
                out.append(f"    case {i}: return {n}_arena + {self.plan.offset(g, t)};")
            out += ["    default: return NULL;", "  }", "}", ""]
        out.append(f"int {n}_invoke(void) {{")
        block = {i: (j, sp) for j, sp in enumerate(g.splits()) for i in sp.ops}
        for op in g.ops:
            if op.index in block:
                j, sp = block[op.index]
                if op.index == sp.first:
                    out += self._split_block(sp, j)
                continue
            out.append(f"  /* {self._label(op)} */")
            out.append(f"  EDC_PROFILE_BEGIN({op.index});")
            for k, call in enumerate(op.calls()):
                args = [f"&{self._sname(op, k)}"]
                args += [self._ptr(t, True) for t in call.inputs]
                args += [self._ptr(t, False) for t in call.outputs]
                if call.scratch_bytes:
                    at = self.plan.offsets[scratch_key(op.index)]
                    args.append(f"(int8_t *)({n}_arena + {at})")
                elif call.scratch_arg:
                    args.append("NULL")
                if call.status:
                    out.append(f"  if ({call.func}({', '.join(args)}) != 0) return -1;")
                else:
                    out.append(f"  {call.func}({', '.join(args)});")
            out.append(f"  EDC_PROFILE_END({op.index});")
        out += ["  return 0;", "}", ""]
        return "\n".join(out)

    def _init(self) -> list[str]:
        """``<name>_init``: checks every planned library scratch buffer (``scratch_check``)
        against the size the library itself asks for on this build; -1 when one is short."""
        checks = [
            f"  if ({op.scratch_check}(&{self._sname(op, 0)}) > {op.scratch_bytes}) return -1;"
            for op in self.g.ops
            if op.scratch_check and len(op.calls()) == 1
        ]
        if not checks:
            return [f"int {self.name}_init(void) {{ return 0; }}", ""]
        return [f"int {self.name}_init(void) {{", *checks, "  return 0;", "}", ""]

    # --- split ("patch") execution -----------------------------------------------------------

    @staticmethod
    def _table_name(name: str, j: int) -> str:
        return f"{name}_split" if j == 0 else f"{name}_split{j}"

    @staticmethod
    def _split_ctype(sp: Split) -> str:
        """The narrowest C type holding every number of the split table."""
        vals = [
            v
            for band in sp.steps
            for st in band
            for v in (st.keep_from, st.keep_rows, st.oy_lo, st.oy_hi, st.in_row0, st.out_row)
        ]
        lo, hi = min(vals, default=0), max(vals, default=0)
        if lo >= -128 and hi <= 127:
            return "int8_t"
        if lo >= 0 and hi <= 255:
            return "uint8_t"
        return "int16_t" if lo >= -32768 and hi <= 32767 else "int32_t"

    def _split_table(self, sp: Split, j: int) -> list[str]:
        m = len(sp.ops)
        out = [
            f"/* Split execution of operators {sp.first}..{sp.last}: per band, per stage: rows kept",
            " * (from, count), rows computed [lo, hi), the input buffer's first row, where the rows",
            " * go (see toolchain/compile/patch.py). */",
            f"static const {self._split_ctype(sp)} {self._table_name(self.name, j)}"
            f"[{len(sp.steps)}][{m}][6] = {{",
        ]
        for band in sp.steps:
            cells = ", ".join(
                f"{{{st.keep_from}, {st.keep_rows}, {st.oy_lo}, {st.oy_hi}, {st.in_row0}, "
                f"{st.out_row}}}"
                for st in band
            )
            out.append(f"  {{{cells}}},")
        out += ["};", ""]
        return out

    def _split_block(self, sp: Split, j: int) -> list[str]:
        g, n = self.g, self.name
        m = len(sp.ops)
        out = [
            f"  /* operators {sp.first}..{sp.last} split into {len(sp.steps)} bands of "
            f"{sp.band_rows} output row(s): each earlier output lives in a band buffer */",
            f"  EDC_PROFILE_BEGIN({sp.first});",
            "  {",
            "    int32_t band_;",
            f"    for (band_ = 0; band_ < {len(sp.steps)}; band_++) {{",
            f"      const {self._split_ctype(sp)} (*st_)[6] = {self._table_name(n, j)}[band_];",
        ]
        for k, i in enumerate(sp.ops):
            op = g.ops[i]
            rb = sp.row_bytes[k]
            out.append(f"      /* {self._label(op)} */")
            if k < m - 1:
                buf = f"({n}_arena + {self.plan.offsets[band_key(i)]})"
                out.append(
                    f"      if (st_[{k}][1]) memmove({buf}, {buf} + st_[{k}][0] * {rb}, "
                    f"(size_t)st_[{k}][1] * {rb}u);"
                )
                dst = f"(int8_t *){buf} + st_[{k}][5] * {rb}"
            else:
                dst = f"(int8_t *)({n}_arena + {self.plan.offset(g, op.outputs[0])}) + st_[{k}][5] * {rb}"
            if k == 0:
                src = self._ptr(op.inputs[0], True)
            else:
                src = f"(const int8_t *)({n}_arena + {self.plan.offsets[band_key(sp.ops[k - 1])]})"
            args = [f"&{self._sname(op, 0)}", src, dst]
            if op.scratch_bytes:
                args.append(f"(int8_t *)({n}_arena + {self.plan.offsets[scratch_key(sp.first)]})")
            args += [f"st_[{k}][2]", f"st_[{k}][3]", f"st_[{k}][4]"]
            out.append(f"      {_patch.ROWS_FUNCS[op.func]}({', '.join(args)});")
        out += ["    }", "  }", f"  EDC_PROFILE_END({sp.first});"]
        return out

    def weights_c(self) -> str:
        n = self.name
        out = [
            f"/* {n}: constant data (weights, biases, requantization multipliers and shifts),",
            " * laid out the way the kernels read them. Generated by edgedeploy compile. */",
            '#include "edc_runtime.h"',
            "",
        ]
        for cname, arr, users in self.consts.arrays:
            out.append(f"/* {_comment('; '.join(users))}: {_shape(tuple(arr.values.shape))} */")
            align = 8 if arr.ctype == "int64_t" else 4
            out.append(f"const {arr.ctype} {cname}[{arr.values.size}] EDC_ALIGNED({align}) = {{")
            out.append(_values(arr))
            out += ["};", ""]
        return "\n".join(out)

    def files(self) -> dict[str, str]:
        """File name → text, for every generated file (kernels not included)."""
        return {
            f"{self.name}.h": self.header(),
            f"{self.name}.c": self.model_c(),
            f"{self.name}_weights.c": self.weights_c(),
            f"{self.name}.mk": self.makefile_fragment(),
        }

    def makefile_fragment(self) -> str:
        """``<name>.mk``: the firmware Makefile's per-model settings (``MODEL_OS_FILES``: the
        kernel files built -Os, see :func:`size_files`); ``make MODEL_OS_FILES=...`` wins."""
        files = " ".join(size_files(self.g))
        return (
            f"# {self.name}.mk -- generated by edgedeploy compile; read by the firmware Makefile.\n"
            "# Kernel files built for size (-Os): their operators do < "
            f"{SIZE_SHARE:.0%} of the model's work.\n"
            f"MODEL_OS_FILES ?= {files}\n"
        )
