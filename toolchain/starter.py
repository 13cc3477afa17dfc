"""A commented starter ``edgedeploy.toml`` for a model (what ``edgedeploy init`` writes).

:func:`starter_text` fills in what it is given and leaves every other setting as a
commented-out line with its default and allowed values, so the file documents itself.
The text always parses as a valid project (checked by :func:`write_starter`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from toolchain.errors import UsageError
from toolchain.fsutil import atomic_write_text, check_output_path, writing_to
from toolchain.project import BENCH_RUNNERS, PRUNE_IMPORTANCE, PRUNE_METHODS, parse_project


def _q(s: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    return json.dumps(s)


def _line(key: str, value: str | None, default: str, comment: str) -> str:
    """``key = value  # comment`` when given, else the commented-out default."""
    text = f"# {key} = {default}" if value is None else f"{key} = {value}"
    return f"{text.ljust(43)} # {comment}"  # a space before the comment, also after a long value


def starter_text(
    *,
    model: str = "model.py:build",
    name: str | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    calibration: str = "calib.npy",
    validation: str | None = None,
    validation_labels: str | None = None,
    train: str | None = None,
    train_labels: str | None = None,
    target: str = "mps2-an386",
    bench_target: str | None = None,
    prune_ratio: float | None = None,
) -> str:
    """The text of a starter project file (see the module doc). ``bench_target`` None leaves
    ``[bench] target`` commented out, i.e. the bench runs on ``[target] name``."""
    shape = None
    if input_shapes:
        shapes = [list(map(int, s)) for s in input_shapes]
        shape = json.dumps(shapes[0] if len(shapes) == 1 else shapes)
    lines = [
        "# edgedeploy project file: `edgedeploy run` takes the model below through prune →",
        "# convert → validate → emit → firmware → bench and writes out/report.html.",
        "# Format and every key: docs/project.md. Paths are relative to this file;",
        "# `file.py:name` and `package.module:name` refer to Python code.",
        "",
        _line("name", _q(name) if name else None, '"my-model"', "default: this folder's name"),
        "",
        "[model]",
        _line("source", _q(model), '"model.py:build"',
              "path/file.py:factory | package.module:factory | model.pt | model.pt2"),
        _line("input_shape", shape, "[1, 3, 32, 32]",
              "batch first; not needed when the model has example_inputs"),
        _line("weights", None, '"weights.pt"', "a state_dict, loaded with weights_only=True"),
        _line("name", None, '"my_model"', "C symbol stem of the emitted arrays"),
        "",
        "[data]                                      # PyTorch layout (N, C, H, W), float",
        _line("calibration", _q(calibration), '"calib.npy"', ".npy/.npz, an image folder, or file.py:fn"),
        _line("validation", _q(validation) if validation else None, '"val.npy"',
              "float vs int8 is measured on this"),
        _line("validation_labels", _q(validation_labels) if validation_labels else None,
              '"val_labels.npy"', "class indices: accuracy float vs int8"),
        _line("train", _q(train) if train else None, '"train.npy"', "fine-tuning after pruning"),
        _line("train_labels", _q(train_labels) if train_labels else None, '"train_labels.npy"',
              "labels (or targets) of train"),
        "",
        "[prune]                                     # off unless a ratio is given",
        _line("ratio", str(prune_ratio) if prune_ratio is not None else None, "0.5",
              'share of channels removed, [0, 1); "fit" searches it for the target'),
        _line("method", None, '"structured"', " | ".join(PRUNE_METHODS)),
        _line("importance", None, '"l1"', " | ".join(PRUNE_IMPORTANCE)),
        _line("round_to", None, "4", "keep a multiple of N channels (CMSIS-NN likes 4 or 8)"),
        _line("keep", None, '["classifier"]', "layers never pruned"),
        _line("epochs", None, "3", "fine-tuning epochs when [data] train is given"),
        _line("max_accuracy_drop", None, "1.0", 'with ratio = "fit": int8 vs unpruned float, points'),
        "",
        "[quantization]",
        _line("activations", None, '"int8"', "int8 | int16 (int16x8: slower, more accurate)"),
        _line("per_channel", None, "true", "per-channel weight scales"),
        _line("calibration_samples", None, "200", "at most this many calibration samples"),
        _line("min_sqnr_db", None, "30.0", "the validate stage fails below this"),
        _line("max_accuracy_drop", None, "1.0", "needs validation labels; percentage points"),
        "",
        "[target]                                    # `edgedeploy targets` lists them",
        _line("name", _q(target), '"mps2-an386"', "a profile name or a .toml path"),
        _line("arena_margin", None, '"4%"', "added to the smallest working tensor arena"),
        "",
        "[firmware]                                  # microcontroller targets",
        _line("tflm_lib", None, '"/path/to/libtensorflow-microlite.a"',
              "builds the image (docs/tflm-library.md)"),
        _line("tflm_include", None, '["/path/to/tflite-micro"]', "the checkout it was built from"),
        "",
        "[bench]",
        _line("target", _q(bench_target) if bench_target else None, '"host-compiled"',
              "default: [target] name (a QEMU board runs the image)"),
        _line("runs", None, "100", "timed inferences (default: the profile's)"),
        _line("warmup", None, "5", "untimed inferences first"),
        _line("runner", None, '"serial"', " | ".join(BENCH_RUNNERS) + " (default: the target's)"),
        _line("port", None, '"/dev/ttyACM0"', "serial URL of a board"),
        "",
        "[output]",
        _line("dir", None, '"out"', "stage folders, report.json, report.html"),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def default_bench_target(target: str) -> str | None:
    """What ``edgedeploy init`` puts in ``[bench] target`` for a ``[target] name`` (like the
    demo project): None (the target itself) when the target runs in QEMU, so the built image
    is benched there with no board; ``host-compiled`` (the same compiled C, built for this
    machine) for a physical microcontroller board; ``host-tflm`` for any other target (a
    phone or a Linux board needs the device: set it by hand). Raises :class:`TargetError`
    for an unknown target."""
    from toolchain.targets import load_target

    t = load_target(target)
    if t.transport.kind == "qemu" or t.kind == "host":
        return None
    return "host-compiled" if t.kind == "mcu" else "host-tflm"


def write_starter(path: str | os.PathLike[str], *, force: bool = False, **kwargs: object) -> Path:
    """Write :func:`starter_text` to ``path`` (refusing to overwrite unless ``force``), after
    checking that it parses as a project. Raises :class:`UsageError`."""
    import tomllib

    p = Path(path)
    if os.path.isdir(p):  # (os.path: False, not OSError, for a name too long)
        p = p / "edgedeploy.toml"
    check_output_path(p, option="--out", kind="file")
    if p.exists() and not force:
        raise UsageError(f"{p} exists", hint="pass --force to overwrite it, or --out another file")
    text = starter_text(**kwargs)  # type: ignore[arg-type]
    parse_project(tomllib.loads(text), root=p.resolve().parent, source=str(p), check_files=False)
    with writing_to(p, option="--out"):
        return atomic_write_text(p, text)
