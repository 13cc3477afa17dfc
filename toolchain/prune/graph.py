"""The dependency graph of a model (torch-pruning) and what we read off it.

torch-pruning traces a model by running it once and following ``grad_fn`` links; layers whose
channels must change together (a residual add, a depthwise conv, a concat, a squeeze-excite
gate) land in one *group*. This module wraps that: it builds the graph, lists the prunable
groups by module name, finds the layers that produce the model's outputs (their channels are
the output shape, so they are never pruned) and the first layers (protected by default), and
explains a failure in terms of the op and the line of the user's code that caused it.
"""

from __future__ import annotations

import linecache
import logging
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from toolchain.errors import PruneError

log = logging.getLogger(__name__)

#: Module types whose output channels start a pruning group.
ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)

#: grad_fn names torch-pruning handles correctly as channel-preserving element-wise ops.
#: Anything else it also treats as element-wise, which is wrong for ops that mix or reshape
#: channels (einsum, matmul, bmm, gather, ...): those are named when a pruned model breaks.
_KNOWN_ELEMENTWISE = (
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "relu",
    "relu6",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "sigmoid",
    "tanh",
    "silu",
    "gelu",
    "leakyrelu",
    "elu",
    "clamp",
    "mean",
    "sum",
    "amax",
    "maxpool",
    "max_pool",
    "avgpool",
    "avg_pool",
    "adaptiveavgpool",
    "adaptivemaxpool",
    "upsample",
    "softmax",
    "logsoftmax",
    "squeeze",
    "unsqueeze",
    "pow",
    "sqrt",
    "exp",
    "abs",
    "tbackward",  # the transpose of a Linear weight
    "tobackward",
    "clone",
    "constantpad",
    "pad",
    "accumulategrad",
    "maximum",
    "minimum",
    "where",
)


def as_tuple(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Example inputs as a tuple of tensors (one per model input)."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def run_model(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run ``model(*inputs)`` without gradients; return its outputs as a flat list of tensors."""
    with torch.no_grad():
        return flatten_outputs(model(*inputs))


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in flatten_outputs(v)]
    return []


@dataclass(frozen=True)
class Group:
    """One set of layers whose output channels are pruned together.

    ``root`` is the module name torch-pruning starts from; ``members`` are all module names
    whose output channels belong to the group (the root first); ``channels`` is how many.
    """

    root: str
    members: tuple[str, ...]
    channels: int


class Graph:
    """A traced model: the torch-pruning dependency graph plus names and protections.

    Raises :class:`PruneError` when the model does not run on ``example_inputs`` or torch-pruning
    cannot trace it (the message names the op and the line of ``forward()``).
    """

    def __init__(self, model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> None:
        self.model = model
        self.inputs = example_inputs
        self.names: dict[nn.Module, str] = {m: n for n, m in model.named_modules()}
        model.eval()
        try:
            with torch.enable_grad():
                self.dg = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_inputs
                )
        except Exception as exc:  # torch-pruning raises anything; explain it
            raise PruneError(
                f"torch-pruning cannot trace the model: {explain_exception(exc)}",
                hint="the model must run as model(*example_inputs) with autograd on; "
                "see docs/prune.md (models torch-pruning cannot trace)",
            ) from exc

    # --- layers ----------------------------------------------------------------------------

    def name(self, module: nn.Module) -> str:
        return self.names.get(module, type(module).__name__)

    def layer_names(self) -> list[str]:
        """Every Conv/Linear layer of the model that the trace reached, in model order."""
        traced = set(self.dg.module2node)
        return [
            n for n, m in self.model.named_modules() if isinstance(m, ROOT_TYPES) and m in traced
        ]

    def output_layers(self) -> list[str]:
        """Layers whose output channels are the model's output channels.

        Walks back from each output through ops that keep channels (activations, BN, pooling,
        reshapes, concat, depthwise convs) to the Conv/Linear layers that set them.
        """
        found: list[str] = []
        sinks = [n for n in self.dg.module2node.values() if not n.outputs]
        self._walk(sinks, lambda node: node.inputs, found)
        return found

    def first_layers(self) -> list[str]:
        """The first Conv/Linear layers the model inputs reach (through channel-keeping ops)."""
        found: list[str] = []

        # A node fed by a model input has a grad_fn with an input that does not require grad
        # (the model input) and no input nodes other than weight-only ones (a Linear's
        # TBackward, whose inputs are all parameters).
        def fed_by_input(n: Any) -> bool:
            return n.grad_fn is not None and any(f is None for f, _ in n.grad_fn.next_functions)

        def weight_only(n: Any) -> bool:
            return not n.inputs and not fed_by_input(n)

        sources = [
            n
            for n in self.dg.module2node.values()
            if fed_by_input(n) and all(weight_only(i) for i in n.inputs)
        ]
        self._walk(sources, lambda node: node.outputs, found)
        return found

    def _walk(self, start: list[Any], step: Any, found: list[str]) -> None:
        seen: set[int] = set()
        stack = list(start)
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            module = node.module
            if isinstance(module, ROOT_TYPES) and not _is_depthwise(module):
                name = self.name(module)
                if name not in found:
                    found.append(name)
                continue
            stack.extend(step(node))

    def groups(self, ignored: Iterable[str] = ()) -> list[Group]:
        """The prunable groups, skipping any group that contains an ``ignored`` layer."""
        ignored_modules = [self.modules_by_name()[n] for n in ignored]
        out: list[Group] = []
        for g in self.dg.get_all_groups(
            ignored_layers=ignored_modules, root_module_types=ROOT_TYPES
        ):
            root = g[0].dep.target.module
            members = [self.name(root)]
            for dep, _ in g:
                mod = dep.target.module
                if (
                    self.dg.is_out_channel_pruning_fn(dep.handler)
                    and isinstance(mod, ROOT_TYPES)
                    and self.name(mod) not in members
                ):
                    members.append(self.name(mod))
            out.append(Group(self.name(root), tuple(members), int(self.dg.get_out_channels(root))))
        return out

    def modules_by_name(self) -> dict[str, nn.Module]:
        return dict(self.model.named_modules())

    def torch_group(self, root: str, idxs: list[int]) -> Any:
        """The torch-pruning group that removes output channels ``idxs`` of layer ``root``."""
        module = self.modules_by_name()[root]
        pruner = self.dg.get_pruner_of_module(module)
        return self.dg.get_pruning_group(module, pruner.prune_out_channels, idxs)

    def unknown_ops(self) -> list[str]:
        """grad_fn names torch-pruning treated as element-wise without knowing them."""
        names: list[str] = []
        for node in self.dg.module2node.values():
            fn = getattr(node.module, "_grad_fn", None)
            if fn is None:
                continue
            low = str(fn).lower()
            if not any(k in low for k in _KNOWN_ELEMENTWISE) and str(fn) not in names:
                names.append(str(fn))
        return names


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups == m.out_channels and m.groups > 1


def explain_exception(exc: BaseException) -> str:
    """``Type: message`` plus the innermost line of user code (outside torch) that raised it."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    where = user_frame(exc)
    return f"{text} (at {where})" if where else text


def user_frame(exc: BaseException) -> str | None:
    """``file:line: code`` of the innermost traceback frame outside torch, torch-pruning and us."""
    skip = [str(Path(p).resolve()) for p in (torch.__file__, tp.__file__)]
    skip = [str(Path(p).parent) for p in skip] + [str(Path(__file__).resolve().parent)]
    skip.append(str(Path(sys.prefix).resolve()))
    best = None
    for fr in traceback.extract_tb(exc.__traceback__):
        path = str(Path(fr.filename).resolve())
        if any(path.startswith(s) for s in skip):
            continue
        code = (fr.line or linecache.getline(fr.filename, fr.lineno or 0)).strip()
        best = f"{Path(fr.filename).name}:{fr.lineno}: {code}"
    return best
