"""Host tier: the project file (edgedeploy.toml) — valid files load into frozen dataclasses,
bad ones fail at load time naming the key and what is allowed; `edgedeploy init` writes a
starter that loads; `edgedeploy run` on a bad file exits non-zero with that message."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.errors import ProjectFileError, UsageError
from toolchain.project import Project, load_project, parse_project, resolve_source
from toolchain.starter import starter_text, write_starter

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "digits" / "edgedeploy.toml"

MINIMAL = """
[model]
source = "net.py:build"
input_shape = [1, 3, 16, 16]
[data]
calibration = "calib.npy"
[target]
name = "mps2-an386"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "net.py").write_text("def build():\n    raise SystemExit('not called')\n")
    (tmp_path / "calib.npy").write_bytes(b"")
    return tmp_path


def _load(folder: Path, text: str) -> Project:
    (folder / "edgedeploy.toml").write_text(text)
    return load_project(folder / "edgedeploy.toml")


def _error(folder: Path, text: str) -> str:
    with pytest.raises(ProjectFileError) as info:
        _load(folder, text)
    return str(info.value)


def test_demo_project_loads() -> None:
    p = load_project(DEMO)
    assert p.name == "digits" and p.target.name == "mps2-an386" and p.bench_target == "mps2-an386"
    assert p.firmware.runtime is None  # compiled when every operator is supported
    assert p.model.source == f"{DEMO.parent / 'digits_model.py'}:model"
    assert p.prune.enabled and p.prune.ratio == 0.5 and p.prune.round_to == 4
    assert p.quantization.min_sqnr_db == 25.0 and p.bench.runs == 20
    assert p.out_dir == DEMO.parent / "out"
    json.dumps(p.to_dict())  # JSON-ready
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]


def test_minimal_project_defaults(folder: Path) -> None:
    p = _load(folder, MINIMAL)
    assert p.name == folder.name
    assert p.model.input_shapes == ((1, 3, 16, 16),)
    assert not p.prune.enabled and p.prune.ratio is None
    assert p.quantization.options.per_channel and p.quantization.options.activations == "int8"
    assert p.firmware.enabled and p.firmware.tflm_lib is None
    assert p.bench.enabled and p.bench_target == "mps2-an386"
    assert p.data.calibration == str(folder / "calib.npy")


def test_sources_resolve_against_the_project_folder(tmp_path: Path) -> None:
    assert resolve_source("sub/m.py:fn", tmp_path) == f"{tmp_path / 'sub' / 'm.py'}:fn"
    assert resolve_source("toolchain.zoo.digits:model", tmp_path) == "toolchain.zoo.digits:model"
    assert resolve_source("d/x.npz:labels", tmp_path) == f"{tmp_path / 'd' / 'x.npz'}:labels"
    assert resolve_source("/abs/calib.npy", tmp_path) == "/abs/calib.npy"
    assert resolve_source("imgs", tmp_path) == str(tmp_path / "imgs")


def test_several_input_shapes_and_fit(folder: Path) -> None:
    text = MINIMAL.replace("input_shape = [1, 3, 16, 16]", "input_shape = [[1, 49, 10], [1, 8]]")
    text += '[prune]\nratio = "fit"\nmax_accuracy_drop = 1.5\n'
    p = _load(folder, text)
    assert p.model.input_shapes == ((1, 49, 10), (1, 8))
    assert p.prune.enabled and p.prune.fit and p.prune.max_accuracy_drop == 1.5


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("", "modle = 1\n"), ["unknown key 'modle'", "did you mean 'model'"]),
        (("[target]", "[prune]\nration = 0.5\n[target]"), ["[prune]", "'ration'", "'ratio'"]),
        (("[target]", "[bench]\nruns = \"20\"\n[target]"), ["[bench] runs", "an integer", "'20' (string)"]),
        (("[target]", "[quantization]\nper_channel = 1\n[target]"), ["per_channel", "true or false"]),
        (("[target]", "[prune]\nratio = 1.5\n[target]"), ["[prune] ratio", "[0, 1)", '"fit"']),
        (("[target]", "[prune]\nratio = 0.5\nmethod = \"magic\"\n[target]"), ["method", "'magic'", "structured, unstructured"]),
        (("[target]", "[quantization]\nactivations = \"int4\"\n[target]"), ["[quantization]", "'int4'", "int8, int16"]),
        (("[target]", "[quantization]\nactivations = \"int16\"\ninput_dtype = \"int8\"\n[target]"), ["[quantization]", "input type 'int8'", "int16, float32"]),
        (("[target]", "[quantization]\ncalibration_samples = 0\n[target]"), ["[quantization] calibration_samples", "at least 1"]),
        (("input_shape = [1, 3, 16, 16]", "input_shape = [2, 3, 16, 16]"), ["input_shape", "batch size must be 1"]),
        (("input_shape = [1, 3, 16, 16]", "input_shape = \"1,3,16,16\""), ["input_shape", "positive integers"]),
        (('name = "mps2-an386"', 'name = "no-such-board"'), ["[target] name", "unknown target", "mps2-an386"]),
        (('source = "net.py:build"', 'source = "missing.py:build"'), ["[model] source", "file not found", "missing.py"]),
        (('source = "net.py:build"\n', ""), ["[model] source", "is required"]),
        (("[target]\nname = \"mps2-an386\"", ""), ["the [target] table is required"]),
        (("[target]", "[prune]\nenabled = true\n[target]"), ["[prune] ratio", "required when pruning is enabled"]),
        (("[target]", '[prune]\nratio = "fit"\n[target]'), ['ratio = "fit" needs a quality floor']),
        (("[target]", "[quantization]\nmax_accuracy_drop = 1.0\n[target]"), ["max_accuracy_drop needs labelled validation data"]),
        (('name = "mps2-an386"', 'name = "mps2-an386"\narena_margin = "lots"'), ["[target] arena_margin"]),
        (("[target]", "[bench]\nrunner = \"usb\"\n[target]"), ["[bench] runner", "host-tflm"]),
        (("[target]", "[output]\nhtml = \"yes\"\n[target]"), ["[output] html", "true or false"]),
        (("[data]", "[data2]"), ["unknown key 'data2'", "did you mean 'data'"]),
        (("[target]", '[firmware]\ntflm_lib = "net.py"\n[target]'), ["[firmware] tflm_lib", "without tflm_include", "tflite-micro"]),
        (("[target]", '[firmware]\nruntime = "tvm"\n[target]'), ["[firmware] runtime", "'tvm' is not allowed", "compiled, tflm"]),
    ],
)  # fmt: skip
def test_bad_project_files_name_the_key(
    folder: Path, edit: tuple[str, str], expected: list[str]
) -> None:
    old, new = edit
    text = new + MINIMAL if old == "" else MINIMAL.replace(old, new, 1)
    msg = _error(folder, text)
    assert "edgedeploy.toml" in msg and ": :" not in msg  # top-level keys have no table
    for part in expected:
        assert part in msg, (part, msg)


def test_not_toml_and_missing_file(folder: Path) -> None:
    with pytest.raises(ProjectFileError, match="no project file"):
        load_project(folder)  # a folder without edgedeploy.toml
    with pytest.raises(ProjectFileError, match="no project file"):
        load_project(folder / "nope.toml")
    msg = _error(folder, "[model\nsource = 1")
    assert "not valid TOML" in msg and "line 1" in msg


def test_starter_text_is_a_valid_project(tmp_path: Path) -> None:
    plain = tomllib.loads(starter_text())
    p = parse_project(plain, root=tmp_path, check_files=False)
    assert p.model.source.endswith("model.py:build") and not p.prune.enabled
    filled = starter_text(
        model="toolchain.zoo.digits:model",
        name="digits",
        input_shapes=[(1, 1, 8, 8)],
        calibration="calib.npz",
        validation="val.npy",
        validation_labels="val_labels.npy",
        prune_ratio=0.25,
        target="nucleo-l4r5zi",
        bench_target=None,
    )
    p = parse_project(tomllib.loads(filled), root=tmp_path, check_files=False)
    assert p.model.source == "toolchain.zoo.digits:model" and p.name == "digits"
    assert p.model.input_shapes == ((1, 1, 8, 8),) and p.prune.ratio == 0.25
    assert p.bench_target == "nucleo-l4r5zi" and p.data.validation_labels
    # every setting is documented in the file, given or not
    for key in ("weights", "round_to", "min_sqnr_db", "tflm_lib", "runner", "[output]"):
        assert key in filled
    long = starter_text(calibration="../../a/much/longer/path/to/the/calibration/data.npy")
    assert '/data.npy" # ' in long  # the comment stays apart from a long value


def test_init_command_writes_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "edgedeploy.toml"
    args = ["init", "--model", "toolchain.zoo.digits:model", "--calib", "c.npy", "--out", str(out)]
    assert main([*args, "--input-shape", "1,1,8,8", "--prune", "0.5"]) == 0
    assert "edgedeploy run" in capsys.readouterr().out
    p = load_project(out, check_files=False)
    assert p.prune.ratio == 0.5 and p.model.input_shapes == ((1, 1, 8, 8),)
    # like the demo: a QEMU board benches its own image (the commented-out default)
    assert p.target.name == "mps2-an386" and p.bench.target is None
    assert p.bench_target == "mps2-an386"
    before = out.read_text()
    assert main(args) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == before
    assert main([*args, "--force", "--target", "no-such-board"]) != 0
    assert "unknown target" in capsys.readouterr().err and out.read_text() == before
    with pytest.raises(UsageError):
        write_starter(out, model="m.py:f")


@pytest.mark.parametrize(
    ("target", "bench", "expected"),
    [
        ("lm3s6965evb", None, "lm3s6965evb"),  # QEMU: the image runs there, no board
        ("nucleo-l4r5zi", None, "host-compiled"),  # a physical board: the same C on this host
        ("linux-x86_64", None, "host-tflm"),
        ("nucleo-l4r5zi", "host-tflm", "host-tflm"),  # given: kept
    ],
)
def test_init_default_bench_target(
    tmp_path: Path, target: str, bench: str | None, expected: str
) -> None:
    out = tmp_path / "edgedeploy.toml"
    args = ["init", "--model", "toolchain.zoo.digits:model", "--target", target, "--out", str(out)]
    assert main([*args, *(["--bench-target", bench] if bench else [])]) == 0
    assert load_project(out, check_files=False).bench_target == expected


def test_run_command_rejects_a_bad_project(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "edgedeploy.toml").write_text(
        MINIMAL.replace("[target]", "[prune]\nration = 0.5\n[target]")
    )
    assert main(["run", str(folder / "edgedeploy.toml")]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'ration'" in err and "did you mean 'ratio'" in err
    assert not (folder / "out").exists()  # nothing ran, nothing written
    (folder / "edgedeploy.toml").write_text(MINIMAL)
    lib = str(folder / "net.py")  # any file: the missing include directory is caught first
    monkeypatch.delenv("EDGEDEPLOY_TFLM_INCLUDE", raising=False)
    assert main(["run", str(folder / "edgedeploy.toml"), "--tflm-lib", lib]) == 2
    assert "needs its include directory: --tflm-include" in capsys.readouterr().err
    assert not (folder / "out").exists()
    assert main(["run", str(folder / "absent.toml")]) == 1
    assert "edgedeploy init" in capsys.readouterr().err


def test_command_line_library_and_bench_target(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run`/`demo` --tflm-lib/--tflm-include/--bench-target; the environment's library for
    `run` only (the demo is the no-library path unless given one)."""
    from toolchain.cli import build_parser
    from toolchain.cli.run import with_options
    from toolchain.errors import TargetError

    (folder / "edgedeploy.toml").write_text(MINIMAL)
    project = load_project(folder)
    lib, inc = folder / "net.py", folder  # any file and folder: not built here
    parse = build_parser().parse_args
    args = parse(["demo", "--tflm-lib", str(lib), "--tflm-include", str(inc),
                  "--bench-target", "host-tflm"])  # fmt: skip
    p = with_options(project, args, env=False)
    assert (p.firmware.tflm_lib, p.firmware.tflm_include) == (lib, (inc,))
    assert p.bench_target == "host-tflm" and project.bench_target == "mps2-an386"
    monkeypatch.setenv("EDGEDEPLOY_TFLM_LIB", str(lib))
    monkeypatch.setenv("EDGEDEPLOY_TFLM_INCLUDE", str(inc))
    assert with_options(project, parse(["run"])).firmware.tflm_include == (inc,)
    assert with_options(project, parse(["demo"]), env=False).firmware.tflm_lib is None
    with pytest.raises(TargetError, match="nucleo"):
        with_options(project, parse(["run", "--bench-target", "nucleo"]))
