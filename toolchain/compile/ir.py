"""The compiler's small typed IR: tensors with constant shapes, ops with precomputed parameters.

A :class:`Graph` is what :mod:`.lower` makes from a .tflite file and what :mod:`.planner` and
:mod:`.cwriter` consume. Every value an op's kernel needs is here already as an integer (or a
:class:`ConstArray`), so the C writer only formats; nothing is computed on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: TFLite TensorType numbers used in ``edc_tensor_info.dtype``.
DTYPE_CODES = {"float32": 0, "int32": 2, "uint8": 3, "int16": 7, "int8": 9}
ITEMSIZE = {"float32": 4, "int32": 4, "uint8": 1, "int16": 2, "int8": 1}
CTYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "uint8": "uint8_t"}
ITEMSIZE["int64"] = 8


@dataclass
class Tensor:
    """An activation tensor (constants live in :class:`ConstArray` s instead)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    #: tensor index whose storage this one shares (RESHAPE and friends); None for itself
    alias_of: int | None = None

    @property
    def nbytes(self) -> int:
        n = ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, eq=False)
class ConstArray:
    """Constant data for the weights file, in the layout the kernel reads it."""

    ctype: str  # int8_t, int16_t, int32_t
    values: np.ndarray = field(repr=False)
    what: str = ""  # e.g. "weights", "bias", "mult" (for names and comments)

    @property
    def nbytes(self) -> int:
        return int(self.values.size * self.values.itemsize)

    def key(self) -> tuple[str, bytes]:
        """Identity for deduplication: type and exact bytes."""
        return self.ctype, np.ascontiguousarray(self.values).tobytes()


#: A value of a kernel parameter struct field: an integer, a list of integers (a C array
#: inside the struct), a constant array (a pointer to it) or None (NULL).
FieldValue = int | list[int] | ConstArray | None


@dataclass
class Op:
    """One operator as a kernel call: ``func(&params, inputs..., outputs...)``.

    ``kernel`` is the kernel source stem (``edc_conv``) or "" for a no-op alias.
    """

    index: int
    kind: str  # builtin name, e.g. CONV_2D
    kernel: str
    func: str
    struct: str
    fields: dict[str, FieldValue]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    summary: str = ""  # one line for the comment above the call
    #: several kernel calls for one operator (CONCATENATION: one copy per input); when set,
    #: these are emitted instead of this op's own func/struct/fields
    parts: list[Op] = field(default_factory=list)
    #: bytes of arena scratch the kernel needs while it runs (passed as its last argument)
    scratch_bytes: int = 0
    #: the kernel takes a scratch pointer even when it needs none (NULL is passed then)
    scratch_arg: bool = False
    #: the kernel returns a status (0: success); invoke returns -1 on any other value
    status: bool = False
    #: C function giving the kernel's own scratch size from its params struct; init checks
    #: the planned ``scratch_bytes`` against it on the device (CMSIS-NN calls)
    scratch_check: str = ""

    @property
    def is_alias(self) -> bool:
        return not self.kernel

    def calls(self) -> list[Op]:
        """The kernel calls this operator makes, in order (none for an alias)."""
        if self.is_alias:
            return []
        return self.parts or [self]


@dataclass(frozen=True)
class SplitStep:
    """What one stage of a split block does in one band (rows are the stage's output rows).

    ``keep_from``/``keep_rows``: rows of the stage's band buffer still needed, moved to its
    start first (``keep_rows`` 0: nothing kept); ``oy_lo``..``oy_hi``: the rows computed now,
    written at row ``out_row`` of the buffer (of the whole output tensor for the last stage);
    ``in_row0``: the input row held at the start of the input buffer (0 for the block's input,
    which stays whole)."""

    keep_from: int
    keep_rows: int
    oy_lo: int
    oy_hi: int
    in_row0: int
    out_row: int


@dataclass(frozen=True)
class Split:
    """Split ("patch") execution of consecutive operators ``ops``: the last one's output rows
    are made ``band_rows`` at a time; each earlier operator's output lives only in a small band
    buffer (``buffer_rows`` rows of ``row_bytes``) instead of a whole tensor. Rows shared by
    consecutive bands are kept (moved), never recomputed. ``steps[band][stage]``."""

    ops: tuple[int, ...]
    band_rows: int
    buffer_rows: tuple[int, ...]  # per stage but the last
    row_bytes: tuple[int, ...]  # output row bytes per stage
    steps: tuple[tuple[SplitStep, ...], ...]

    @property
    def first(self) -> int:
        return self.ops[0]

    @property
    def last(self) -> int:
        return self.ops[-1]

    def buffer_bytes(self, stage: int) -> int:
        return self.buffer_rows[stage] * self.row_bytes[stage]


@dataclass
class Graph:
    """A lowered model: activation tensors, ops in order, graph inputs and outputs."""

    tensors: dict[int, Tensor]
    ops: list[Op]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    model_sha256: str
    model_bytes: int
    #: split execution of a run of operators (see :mod:`.patch`); None: every op whole
    split: Split | None = None
    #: the planner keeps every graph input's bytes intact through the whole graph (nothing
    #: else is placed over them), so the same input can be invoked again without a refill
    keep_inputs: bool = False
    #: further split blocks, disjoint from ``split`` and from each other (see :mod:`.patch`)
    more_splits: tuple[Split, ...] = ()

    def splits(self) -> tuple[Split, ...]:
        """Every split block: ``split`` first, then ``more_splits``."""
        return ((self.split,) if self.split is not None else ()) + self.more_splits

    def storage(self, t: int) -> int:
        """The tensor whose storage ``t`` uses (follows aliases)."""
        seen = 0
        while self.tensors[t].alias_of is not None and seen < 1000:
            t = self.tensors[t].alias_of  # type: ignore[assignment]
            seen += 1
        return t

    def kernels(self) -> list[str]:
        """Kernel source stems used, sorted."""
        return sorted({op.kernel for op in self.ops if op.kernel})
