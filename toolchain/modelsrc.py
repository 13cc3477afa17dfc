"""Load the PyTorch model to convert, with its example inputs and input/output names.

Model sources (:func:`load_model`):

* an ``nn.Module`` (or a ``torch.export.ExportedProgram``) object, in memory;
* ``path/file.py:factory`` or ``package.module:factory``: ``factory()`` returns an
  ``nn.Module``, or ``(module, example_inputs)``;
* a TorchScript file (``.pt``, ``.pth``, ``.ts``; ``torch.jit.save``);
* a ``torch.export`` program (``.pt2``; ``torch.export.save``).

Model and weights files go through :mod:`toolchain.safeload`: every pickle in them is
inspected before torch reads them, and a file that names anything but tensors and plain
containers (or, in a ``.pt2``, carries compiled code or non-operator graph calls) is refused
unread. ``weights`` (a ``state_dict`` file) is then read with ``torch.load(weights_only=True)``. Input shapes come from ``input_shapes`` (one per
input, batch 1: ``(1, 3, 32, 32)``) or from ``example_inputs`` (returned by the factory, or an
attribute of the module or of the factory). The model is run once on the example inputs, so
a wrong shape fails here with the model's own error message.

Everything raised is a :class:`~toolchain.errors.ModelLoadError` (the model is broken),
:class:`~toolchain.errors.InputFileError` (a file is missing) or
:class:`~toolchain.errors.UsageError` (the shapes given do not fit the model).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolchain import pyref, safeload
from toolchain.errors import InputFileError, ModelLoadError, UsageError

if TYPE_CHECKING:  # torch is imported where it is used: parse_shape must stay cheap
    import torch

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".ptl", ".jit")
EXPORT_SUFFIXES = (".pt2",)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for export: in eval mode, with example inputs it runs on."""

    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_shapes: tuple[Shape, ...]
    source: str

    @property
    def input_shapes(self) -> tuple[Shape, ...]:
        return tuple(tuple(int(s) for s in t.shape) for t in self.example_inputs)

    def forward_outputs(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Run the model; its outputs flattened to a list of tensors (same order as names)."""
        import torch

        with torch.no_grad():
            out = self.module(*inputs)
        return _flatten_outputs(out)[1]


def parse_shape(text: str) -> Shape:
    """``"1,3,32,32"`` (or ``1x3x32x32``) → ``(1, 3, 32, 32)``; raises UsageError otherwise."""
    body = str(text).strip().strip("()[]")
    shape: Shape = ()
    if re.fullmatch(r"\s*\d+(\s*[,x×]\s*\d+)*\s*", body):
        shape = tuple(int(p) for p in re.split(r"\s*[,x×]\s*", body.strip()))
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(
            f"--input-shape {text!r} is not a shape",
            hint="give positive integers separated by commas, batch first: 1,3,32,32",
        )
    return shape


def load_model(
    source: Any,
    *,
    weights: str | Path | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
) -> LoadedModel:
    """Load ``source`` (see the module doc), apply ``weights``, settle its example inputs."""
    import torch

    desc = _describe(source)
    module, examples = _build(source)
    if weights is not None:
        _load_weights(module, Path(weights))
    with contextlib.suppress(NotImplementedError):  # torch.export modules: fixed at export
        module.eval()
    user_shapes = input_shapes is not None
    if input_shapes is not None:
        shapes = [tuple(int(s) for s in sh) for sh in input_shapes]
        if not shapes:
            raise UsageError("no input shape given", hint="pass --input-shape 1,3,32,32")
        gen = torch.Generator().manual_seed(0)
        example = tuple(torch.randn(*sh, generator=gen) for sh in shapes)
    elif examples is not None:
        example = examples
    else:
        attr = getattr(module, "example_inputs", None)
        if attr is None:
            raise UsageError(
                f"{desc}: the input shape is unknown",
                hint="pass --input-shape 1,3,32,32 (once per input), or give the model or its "
                "factory an example_inputs attribute (or return (model, example_inputs))",
            )
        example = _as_example_inputs(attr, desc)
    names = _input_names(module, len(example))
    expected = _positional_count(module)
    if expected is not None and expected != len(example):
        raise UsageError(
            f"{desc}: forward() takes {expected} input(s) but {len(example)} "
            f"input shape(s) were given",
            hint="pass --input-shape once per input, in forward()'s order",
        )
    for name, t in zip(names, example, strict=True):
        if t.dtype not in (torch.float32, torch.float64, torch.float16):
            raise UsageError(
                f"{desc}: input {name!r} is {t.dtype}; only float inputs can be quantized",
                hint="make the model take float tensors (e.g. embed integer ids inside it)",
            )
        if t.dim() == 0 or t.shape[0] != 1:
            raise UsageError(
                f"{desc}: input {name!r} has shape {tuple(t.shape)}; the batch size must be 1",
                hint="edge targets run one sample at a time: use --input-shape 1,...",
            )
    example = tuple(t.float() for t in example)
    try:
        with torch.no_grad(), pyref.user_code(f"{desc}: the model's forward()", ModelLoadError):
            out = module(*example)
    except ModelLoadError:
        raise
    except Exception as exc:  # the user's model: report what it raised
        shapes_txt = ", ".join(str(list(t.shape)) for t in example)
        cls = UsageError if user_shapes else ModelLoadError
        raise cls(
            f"{desc}: the model fails on input shape(s) {shapes_txt}: {type(exc).__name__}: {exc}",
            hint="check --input-shape (batch first, PyTorch layout, e.g. 1,3,32,32)"
            if user_shapes
            else "check the model's example_inputs",
        ) from exc
    out_keys, outs = _flatten_outputs(out, desc=desc)
    out_names = _unique(
        [_sanitize(k) for k in out_keys]
        if out_keys
        else (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))])
    )
    return LoadedModel(
        module=module,
        example_inputs=example,
        input_names=names,
        output_names=tuple(out_names),
        output_shapes=tuple(tuple(int(s) for s in o.shape) for o in outs),
        source=desc,
    )


def precheck(source: Any, *, weights: str | os.PathLike[str] | None = None) -> None:
    """Inspect model and weights *files* (:mod:`toolchain.safeload`) without importing torch:
    callers run it before starting anything slow, so a refused file fails in a moment."""
    if isinstance(source, str | Path):
        path = Path(str(source)).expanduser()
        if path.suffix in EXPORT_SUFFIXES and os.path.isfile(path):
            safeload.check_pt2(path)
        elif (
            path.suffix in TORCHSCRIPT_SUFFIXES
            and os.path.isfile(path)
            and _is_torchscript_zip(path)
        ):
            safeload.check_torchscript(path)
    if weights is not None and os.path.isfile(weights):
        safeload.check_torch_save_archive(
            Path(weights), where=str(weights), what="a state_dict saved with torch.save"
        )


# --- building the module --------------------------------------------------------------------


def _describe(source: Any) -> str:
    if isinstance(source, str | Path):
        return str(source)
    return f"<{type(source).__name__} object>"


def _build(source: Any) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...] | None]:
    import torch

    if isinstance(source, torch.nn.Module):
        return source, None
    if isinstance(source, torch.export.ExportedProgram):
        return _from_exported(source, "<ExportedProgram>")
    if not isinstance(source, str | Path):
        raise ModelLoadError(
            f"cannot convert a {type(source).__name__}",
            hint="pass an nn.Module, a path/file.py:factory, a TorchScript .pt or a .pt2 file",
        )
    text = str(source)
    path = Path(text).expanduser()
    if path.suffix in EXPORT_SUFFIXES or path.suffix in TORCHSCRIPT_SUFFIXES:
        if not path.is_file():
            raise InputFileError(f"model file not found: {text}", hint="check the path")
        if path.suffix in EXPORT_SUFFIXES:
            ep = safeload.load_exported_program(path)
            return _from_exported(ep, text)
        return _load_torchscript(path), None
    if pyref.split(text) is not None:
        return _call_factory(text)
    if os.path.isdir(path):
        raise InputFileError(
            f"{text} is a folder, not a model",
            hint="give path/file.py:factory, a TorchScript .pt or a torch.export .pt2 file",
        )
    if path.exists():
        raise ModelLoadError(
            f"{text}: unknown model file type {path.suffix!r}",
            hint="use path/file.py:factory, a TorchScript .pt or a torch.export .pt2",
        )
    raise InputFileError(
        f"model not found: {text}",
        hint="use path/file.py:factory, package.module:factory, model.pt (TorchScript) or "
        "model.pt2 (torch.export)",
    )


def _from_exported(ep: Any, desc: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...] | None]:
    module = ep.module()
    examples = None
    ex = getattr(ep, "example_inputs", None)
    if ex is not None:
        args = ex[0] if isinstance(ex, tuple) and len(ex) == 2 and isinstance(ex[1], dict) else ex
        examples = _as_example_inputs(args, desc)
    return module, examples


def _is_torchscript_zip(path: Path) -> bool | None:
    """True for a TorchScript archive (it has code/ or constants.pkl), False for another zip
    (a ``torch.save()`` pickle), None when ``path`` is not a zip file at all."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def _load_torchscript(path: Path) -> torch.nn.Module:
    scripted = _is_torchscript_zip(path)
    if scripted:
        try:
            return safeload.load_torchscript(path)  # inspects the pickles first
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001  # torch.jit.load's own error: a broken archive
            kind = f"not a loadable TorchScript file ({type(exc).__name__}: {str(exc)[:200]})"
    elif scripted is None:
        kind = "not a TorchScript file"
    else:
        kind = "a torch.save() pickle (a state_dict or a whole pickled nn.Module), not TorchScript"
    raise ModelLoadError(
        f"{path}: {kind}",
        hint="give the model as path/file.py:factory with --weights state_dict.pt, or save "
        "it with torch.jit.save(torch.jit.script(model)) or torch.export.save; pickled "
        "modules are never unpickled (they can run arbitrary code)",
    )


def _call_factory(spec: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...] | None]:
    import torch

    factory = pyref.load_object(spec, what="model factory", error=ModelLoadError)
    if not callable(factory):
        raise ModelLoadError(f"model factory {spec}: {type(factory).__name__} is not callable")
    try:
        with pyref.user_code(f"model factory {spec}", ModelLoadError):
            made = factory()
    except ModelLoadError:
        raise
    except Exception as exc:  # the user's factory
        raise ModelLoadError(
            f"model factory {spec} raised {type(exc).__name__}: {exc}",
            hint="the factory is called with no arguments and must return an nn.Module",
        ) from exc
    examples = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
        made, raw = made
        examples = _as_example_inputs(raw, spec)
    if not isinstance(made, torch.nn.Module):
        raise ModelLoadError(
            f"model factory {spec} returned {type(made).__name__}, not an nn.Module",
            hint="return the model (or (model, example_inputs))",
        )
    if examples is None and getattr(factory, "example_inputs", None) is not None:
        examples = _as_example_inputs(factory.example_inputs, spec)
    return made, examples


def _as_example_inputs(raw: Any, desc: str) -> tuple[torch.Tensor, ...]:
    """A tensor, a shape, or a sequence of tensors/shapes → a tuple of tensors."""
    import torch

    gen = torch.Generator().manual_seed(0)

    def one(x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.detach()
        if isinstance(x, Sequence) and x and all(isinstance(s, int) for s in x):
            return torch.randn(*x, generator=gen)
        if hasattr(x, "shape") and hasattr(x, "dtype"):  # numpy
            return torch.as_tensor(x)
        raise ModelLoadError(
            f"{desc}: example_inputs must be tensors or shapes, got {type(x).__name__}"
        )

    if isinstance(raw, torch.Tensor) or (
        isinstance(raw, Sequence) and raw and all(isinstance(s, int) for s in raw)
    ):
        return (one(raw),)
    if isinstance(raw, Sequence) and not isinstance(raw, str) and raw:
        return tuple(one(x) for x in raw)
    raise ModelLoadError(f"{desc}: example_inputs is empty or of an unknown kind")


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    import torch

    if not path.is_file():
        raise InputFileError(f"weights file not found: {path}", hint="check --weights")
    sd = safeload.load_state_dict(path)
    if isinstance(sd, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = sd.get(key)
            if (
                isinstance(inner, Mapping)
                and inner
                and all(isinstance(v, torch.Tensor) for v in inner.values())
            ):
                sd = inner
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelLoadError(
            f"{path}: not a state_dict (a mapping of names to tensors)",
            hint="save it with torch.save(model.state_dict(), path)",
        )
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    try:
        result = module.load_state_dict(dict(sd), strict=False)
    except RuntimeError as exc:  # size mismatches
        raise ModelLoadError(
            f"{path}: weights do not fit the model: {str(exc)[:600]}",
            hint="are these weights for this model and configuration?",
        ) from exc
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:4])})")
        raise ModelLoadError(
            f"{path}: weights do not match the model: {'; '.join(parts)}",
            hint="are these weights for this model and configuration?",
        )


# --- names ------------------------------------------------------------------------------------


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", str(name)).strip("_") or "t"
    return s if s[0].isalpha() else f"t_{s}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def _forward_params(module: torch.nn.Module) -> list[inspect.Parameter] | None:
    import torch

    if isinstance(module, torch.jit.ScriptModule):
        try:
            args = module.forward.schema.arguments[1:]  # type: ignore[attr-defined]
        except (AttributeError, RuntimeError):
            return None
        return [inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args]
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    return params


def _input_names(module: torch.nn.Module, n: int) -> tuple[str, ...]:
    params = _forward_params(module) or []
    names = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(names) >= n:
        return tuple(_unique([_sanitize(x) for x in names[:n]]))
    return ("input",) if n == 1 else tuple(f"input_{i}" for i in range(n))


def _positional_count(module: torch.nn.Module) -> int | None:
    """Required positional parameters of forward(), or None when it takes *args."""
    params = _forward_params(module)
    if params is None or any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    return sum(
        1
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.default is inspect.Parameter.empty
    )


def _flatten_outputs(out: Any, *, desc: str = "model") -> tuple[list[str], list[torch.Tensor]]:
    """Model output → (names when it was a dict, tensors in order)."""
    import torch

    if isinstance(out, torch.Tensor):
        return [], [out]
    if isinstance(out, Mapping):
        keys = [str(k) for k in out]
        tensors = [out[k] for k in out]
    elif isinstance(out, list | tuple):
        keys, tensors = [], list(out)
    else:
        raise ModelLoadError(f"{desc}: the model returned {type(out).__name__}, not tensors")
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ModelLoadError(
            f"{desc}: the model must return a tensor, or a tuple/list/dict of tensors",
            hint="nested containers and non-tensor outputs cannot be exported",
        )
    return keys, tensors
