"""Load trained weights into the zoo's PyTorch ports: Keras .h5, Keras SavedModel, TFLite.

Three readers produce the same thing — the source model's layers *with weights*, in the
model's layer order, each as a :class:`KerasLayer` (Keras kind + arrays in Keras layouts):

* :func:`read_h5` — a Keras 2 ``.h5`` model file, read with h5py (no TensorFlow): the layer
  order comes from the ``model_config`` attribute, the arrays from ``model_weights``.
* :func:`read_savedmodel` — a Keras SavedModel directory: its checkpoint names variables
  ``layer_with_weights-N/<name>``, N in layer order. Needs TensorFlow (imported lazily).
* :func:`read_tflite` — the CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights of a
  .tflite file in operator order, dequantized when int8 (hybrid or full-integer models).
  BatchNorm is already folded into them, so :func:`assign` sets the port's BatchNorms to
  identity. Operator order equals Keras layer order for the MLPerf Tiny references.

:func:`assign` copies them onto a port's ``keras_layers()`` with the layout changes:

==================  ==============================  =================================
Keras layer         Keras array layout              PyTorch layout
==================  ==============================  =================================
Conv2D              kernel (kh, kw, in, out)        weight (out, in, kh, kw)
DepthwiseConv2D     kernel (kh, kw, in, mult)       weight (in·mult, 1, kh, kw)
Dense               kernel (in, out)                weight (out, in)
BatchNormalization  gamma/beta/moving_mean/_var     weight/bias/running_mean/_var
==================  ==============================  =================================

Depthwise output channel ``c·mult + m`` is input channel ``c``'s ``m``-th filter, as in Keras.
Every shape is checked; a mismatch raises :class:`~toolchain.errors.ModelLoadError` naming
the layer, and nothing is half-assigned (the state_dict is built first, then loaded).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toolchain import safeload
from toolchain.errors import InputFileError, ModelLoadError

log = logging.getLogger(__name__)

CONV = "Conv2D"
DEPTHWISE = "DepthwiseConv2D"
DENSE = "Dense"
BATCHNORM = "BatchNormalization"


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer with weights: ``kind`` is the Keras class name, ``arrays`` by var name."""

    name: str
    kind: str
    arrays: dict[str, np.ndarray] = field(repr=False)


def read_h5(path: str | os.PathLike[str]) -> list[KerasLayer]:
    """Layers with weights of a Keras 2 ``.h5`` model file, in model layer order."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"Keras weights file not found: {p}")
    try:
        with h5py.File(p, "r") as f:
            config = json.loads(f.attrs["model_config"])
            group = f.get("model_weights", f)
            layers = []
            for layer in config["config"]["layers"]:
                name = layer["config"]["name"]
                if name not in group:
                    continue
                weight_names = [_str(n) for n in group[name].attrs.get("weight_names", [])]
                if not weight_names:
                    continue
                arrays = {
                    n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[name][n])
                    for n in weight_names
                }
                layers.append(KerasLayer(name, layer["class_name"], arrays))
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(
            f"{p} is not a Keras .h5 model file ({exc})",
            hint="pass a file saved with model.save('x.h5') (Keras 2)",
        ) from exc
    return layers


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_savedmodel(path: str | os.PathLike[str]) -> list[KerasLayer]:
    """Layers with weights of a Keras SavedModel directory, in model layer order (needs TF)."""
    p = Path(path)
    prefix = p / "variables" / "variables"
    if not (p / "saved_model.pb").is_file() or not prefix.with_suffix(".index").is_file():
        raise InputFileError(
            f"{p} is not a SavedModel directory (saved_model.pb and variables/ expected)"
        )
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    by_layer: dict[int, dict[str, np.ndarray]] = {}
    for key in reader.get_variable_to_shape_map():
        # "layer_with_weights-3/gamma/.ATTRIBUTES/VARIABLE_VALUE"; optimizer slots have more
        # parts ("layer_with_weights-3/gamma/.OPTIMIZER_SLOT/optimizer/m/...") and are skipped.
        parts = key.split("/")
        if (
            len(parts) != 4
            or not parts[0].startswith("layer_with_weights-")
            or parts[2:] != [".ATTRIBUTES", "VARIABLE_VALUE"]
        ):
            continue
        head, var = parts[0], parts[1]
        by_layer.setdefault(int(head.rsplit("-", 1)[1]), {})[var] = reader.get_tensor(key)
    return [
        KerasLayer(f"layer_with_weights-{i}", _kind(by_layer[i]), by_layer[i])
        for i in sorted(by_layer)
    ]


def _kind(arrays: dict[str, np.ndarray]) -> str:
    if "depthwise_kernel" in arrays:
        return DEPTHWISE
    if "moving_mean" in arrays:
        return BATCHNORM
    kernel = arrays.get("kernel")
    if kernel is not None and kernel.ndim == 4:
        return CONV
    if kernel is not None and kernel.ndim == 2:
        return DENSE
    return "unknown"


def _torch_arrays(layer: KerasLayer, module: nn.Module) -> dict[str, np.ndarray]:
    a = layer.arrays
    if layer.kind == CONV and isinstance(module, nn.Conv2d) and module.groups == 1:
        out = {"weight": a["kernel"].transpose(3, 2, 0, 1)}
    elif layer.kind == DEPTHWISE and isinstance(module, nn.Conv2d) and module.groups > 1:
        k = a["depthwise_kernel"]  # (kh, kw, in, mult) -> (in*mult, 1, kh, kw)
        kh, kw, cin, mult = k.shape
        out = {"weight": k.reshape(kh, kw, cin * mult, 1).transpose(2, 3, 0, 1)}
    elif layer.kind == DENSE and isinstance(module, nn.Linear):
        out = {"weight": a["kernel"].T}
    elif layer.kind == BATCHNORM and isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        n = a["moving_mean"].shape[0]
        return {
            "weight": a.get("gamma", np.ones(n, np.float32)),
            "bias": a.get("beta", np.zeros(n, np.float32)),
            "running_mean": a["moving_mean"],
            "running_var": a["moving_variance"],
        }
    else:
        raise ModelLoadError(
            f"Keras layer {layer.name} ({layer.kind}) does not fit {type(module).__name__}",
            hint="the weights belong to another model structure",
        )
    if "bias" in a:
        out["bias"] = a["bias"]
    return out


def read_tflite(path: str | os.PathLike[str]) -> list[KerasLayer]:
    """Folded conv / depthwise / dense weights of a .tflite model, in operator order."""
    from ai_edge_litert.interpreter import Interpreter

    from toolchain.tflite_model import TFLiteModel

    model = TFLiteModel.from_file(path)
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    tensors = model.main.tensors

    def value(index: int) -> np.ndarray:
        t = tensors[index]
        a = np.asarray(interp.get_tensor(index))
        if a.dtype.kind in "iu" and t.scales:
            scales = np.asarray(t.scales, np.float64)
            zps = np.asarray(t.zero_points or (0,), np.float64)
            shape = [1] * a.ndim
            if scales.size > 1:
                shape[t.quantized_dimension] = -1
            a = (a - zps.reshape(shape)) * scales.reshape(shape)
        return a.astype(np.float32)

    layers = []
    for op in model.operators:
        kind = {"CONV_2D": CONV, "DEPTHWISE_CONV_2D": DEPTHWISE, "FULLY_CONNECTED": DENSE}.get(
            op.name
        )
        if kind is None:
            continue
        w = value(op.inputs[1])
        if kind == CONV:  # (out, kh, kw, in) -> (kh, kw, in, out)
            arrays = {"kernel": w.transpose(1, 2, 3, 0)}
        elif kind == DEPTHWISE:  # (1, kh, kw, in*mult) -> (kh, kw, in*mult, 1)
            arrays = {"depthwise_kernel": w[0][..., None]}
        else:  # (out, in) -> (in, out)
            arrays = {"kernel": w.T}
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            arrays["bias"] = value(op.inputs[2])
        layers.append(KerasLayer(f"{op.name.lower()}:{op.index}", kind, arrays))
    return layers


def _identity_batchnorm(bn: nn.Module) -> dict[str, np.ndarray]:
    n = int(bn.num_features)  # type: ignore[arg-type]
    eps = float(bn.eps)  # type: ignore[arg-type]
    return {
        "weight": np.ones(n, np.float32),
        "bias": np.zeros(n, np.float32),
        "running_mean": np.zeros(n, np.float32),
        "running_var": np.full(n, 1.0 - eps, np.float32),
    }


def assign(model: nn.Module, layers: Sequence[KerasLayer], *, source: str = "weights") -> None:
    """Copy Keras ``layers`` onto ``model.keras_layers()`` (same order); all or nothing.

    When ``layers`` has no BatchNormalization (a folded source such as a TFLite model), they
    map onto the port's conv/linear modules and every BatchNorm becomes the identity.
    """
    modules: list[nn.Module] = model.keras_layers()  # type: ignore[operator]
    names = {id(m): n for n, m in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    if not any(layer.kind == BATCHNORM for layer in layers):
        for bn in [m for m in modules if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]:
            for pname, value in _identity_batchnorm(bn).items():
                state[f"{names[id(bn)]}.{pname}"] = torch.from_numpy(value)
        modules = [m for m in modules if not isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    if len(modules) != len(layers):
        raise ModelLoadError(
            f"{source} has {len(layers)} layers with weights, "
            f"{type(model).__name__} expects {len(modules)}",
            hint="the weights belong to another model structure",
        )
    for layer, module in zip(layers, modules, strict=True):
        for pname, value in _torch_arrays(layer, module).items():
            target = getattr(module, pname, None)
            if not isinstance(target, torch.Tensor):
                raise ModelLoadError(f"{names[id(module)]} has no {pname} for {layer.name}")
            if tuple(value.shape) != tuple(target.shape):
                raise ModelLoadError(
                    f"shape mismatch: Keras {layer.name}/{pname} {tuple(value.shape)} vs "
                    f"{names[id(module)]}.{pname} {tuple(target.shape)}",
                    hint="the weights belong to another model structure or input size",
                )
            key = f"{names[id(module)]}.{pname}"
            state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    model.load_state_dict(state, strict=False)
    log.info("loaded %d Keras layers from %s into %s", len(layers), source, type(model).__name__)


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load ``path`` into ``model``: Keras ``.h5``, SavedModel dir, ``.tflite``, torch state_dict.

    Raises :class:`InputFileError` (missing/unreadable) or :class:`ModelLoadError` (mismatch).
    """
    p = Path(path)
    if p.is_dir():
        assign(model, read_savedmodel(p), source=str(p))
    elif p.suffix.lower() in (".h5", ".hdf5", ".keras"):
        assign(model, read_h5(p), source=str(p))
    elif p.suffix.lower() == ".tflite":
        assign(model, read_tflite(p), source=str(p))
    elif p.suffix.lower() in (".pt", ".pth"):
        if not p.is_file():
            raise InputFileError(f"weights file not found: {p}")
        state = safeload.load_state_dict(p)
        try:
            model.load_state_dict(state)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load state_dict {p} into {type(model).__name__}: {exc}"
            ) from exc
    elif not p.exists():
        raise InputFileError(f"weights not found: {p}")
    else:
        raise InputFileError(
            f"unknown weights format: {p}",
            hint="use a Keras .h5 file, a SavedModel directory, a .tflite or a .pt state_dict",
        )
    return model
