"""Host tier: every command against every class of bad input (issue 14's "done when").

One table of :class:`Case` objects; each runs ``edgedeploy`` in process (``toolchain.cli.main``)
and must give: a non-zero exit code that is not 70 (the internal-error code), a message naming
the problem and a hint with the fix, no traceback, nothing written or changed anywhere in the
workspace (inputs, output folders, the convert cache), and no marker file (the hostile files
write one if any of their code runs).

To add cases (the SSH/ADB runner cases live in their own file), append :class:`Case` objects to
a list and parametrize over it with :func:`check_case`. ``python -m tests.host.test_bad_inputs``
prints the counts for the closing note.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REFERENCE
from tests.support import payloads as P
from toolchain.cli import main

EXIT_INTERNAL = 70
LONG = "n" * 300  # one path component longer than NAME_MAX
HELLO_INT8 = REFERENCE / "tflm_models/hello_world/hello_world_int8.tflite"
HELLO_FLOAT = REFERENCE / "tflm_models/hello_world/hello_world_float.tflite"

FACTORIES = """
import sys
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def make():
    torch.manual_seed(0)
    return Net(), (torch.randn(1, 4),)


def exits():
    sys.exit(0)


class Exits(Net):
    def forward(self, x):
        sys.exit(0)


def forward_exits():
    return Exits(), (torch.randn(1, 4),)


def interrupts():
    raise KeyboardInterrupt
"""


@dataclass(frozen=True)
class Case:
    """One bad input. ``argv`` gets the workspace (:class:`Workspace`) and returns the
    command line (without the program name). ``message`` and ``hint`` are regexes the output
    must contain (the problem, and the fix: default any ``hint:`` line)."""

    id: str
    kind: str  # security | wrong success | traceback | misleading | earlier issue
    argv: Callable[[Workspace], list[str]]
    message: str
    hint: str = r"hint: "
    code: int | None = None  # exact exit code, when it matters
    env: dict[str, str] = field(default_factory=dict)  # "{W}" is replaced by the workspace
    needs: tuple[Path, ...] = ()  # files outside the project (skipped when absent)
    allowed_new: tuple[str, ...] = ()  # relative paths a failing command may still write


@dataclass
class Workspace:
    root: Path
    marker: Path

    def __truediv__(self, other: str) -> Path:
        return self.root / other

    def s(self, rel: str) -> str:
        return str(self.root / rel)


def _unwritable() -> str | None:
    """A folder path in which nothing can be created, even by root (sysfs), or None."""
    probe = Path("/sys/edgedeploy-bad-input-test")
    if Path("/sys").is_dir() and not probe.exists():
        try:
            probe.mkdir()
        except OSError:
            return str(probe / "out")
        probe.rmdir()
    return None


UNWRITABLE = _unwritable()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("bad_inputs"))


def make_workspace(root: Path) -> Workspace:
    """The inputs every case uses (hostile files included) in ``root``."""
    w = Workspace(root, root / "MARKER")
    (root / "nets.py").write_text(FACTORIES)
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.standard_normal((8, 4)).astype(np.float32))
    np.save(root / "labels_range.npy", np.array([0, 1, 2, 7, 0, 1, 2, 0]))
    np.save(root / "labels_shape.npy", np.zeros((2, 4), np.int64))
    np.save(root / "calib_nan.npy", np.full((8, 4), np.nan, np.float32))
    (root / "a_file").write_text("not a folder")
    (root / "out").mkdir()
    (root / "out" / "keep.txt").write_text("mine")
    (root / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    # hostile files: each writes MARKER if any of it is unpickled / evaluated
    good_pt2 = P.good_pt2(root / "good.pt2")
    good_ts = P.good_torchscript(root / "good_ts.pt")
    P.pt2_sample_inputs(good_pt2, root / "evil_inputs.pt2", w.marker)
    P.pt2_pickled_weight(good_pt2, root / "evil_weight.pt2", w.marker)
    P.pt2_graph_call(good_pt2, root / "evil_graph.pt2", w.marker)
    P.pt2_sympy_expr(good_pt2, root / "evil_sympy.pt2", w.marker)
    P.torchscript_data_pkl(good_ts, root / "evil_ts.pt", w.marker)
    P.weights_pickle(root / "evil_state.pt", w.marker)
    P.weights_bare_pickle(root / "bare_pickle.pt", w.marker)
    P.weights_stack_trick(root / "stack_trick.pt", w.marker)
    P.duplicate_member_zip(root / "duplicate.pt", w.marker)
    P.npy_object(root / "object.npy", w.marker)
    P.npz_object(root / "object.npz", w.marker)
    (root / "targets").mkdir()
    (root / "targets" / "latin1.toml").write_bytes(b'name = "caf\xe9"\nkind = "mcu"\n')
    for name, source in (("project", "nets.py:make"), ("evil_project", "evil_inputs.pt2")):
        (root / f"{name}.toml").write_text(
            f'[model]\nsource = "{root / source}"\n[data]\ncalibration = "{root / "calib.npy"}"\n'
            '[target]\nname = "mps2-an386"\n[bench]\ntarget = "host-tflm"\n'
        )
    (root / "exit_project.toml").write_text(
        (root / "project.toml").read_text().replace("nets.py:make", "nets.py:exits")
    )
    return w


def _cli(*args: str) -> Callable[[Workspace], list[str]]:
    """A fixed command line; ``{W}`` in it stands for the workspace (see :func:`run_case`)."""
    return lambda w: list(args)


def _convert(
    *extra: str, model: str = "nets.py:make", calib: str = "calib.npy"
) -> Callable[[Workspace], list[str]]:
    """``convert`` of ``model`` (nets.py:make) with ``calib`` (calib.npy) into out/, no cache."""
    return _cli(
        "convert",
        f"{{W}}/{model}",
        "--calib",
        f"{{W}}/{calib}",
        "--out",
        "{W}/out",
        "--no-cache",
        *extra,
    )


# --- the table ----------------------------------------------------------------------------

SECURITY = [
    Case(
        "convert: .pt2 whose sample inputs run code",
        "security",
        _convert(model="evil_inputs.pt2"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "convert: .pt2 with a pickled (use_pickle) weight",
        "security",
        _convert(model="evil_weight.pt2"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "convert: .pt2 graph node calling torch.os.system",
        "security",
        _convert(model="evil_graph.pt2"),
        r"calls 'torch\.os\.system', which is not a registered operator",
    ),
    Case(
        "convert: .pt2 whose tensor size is a code-running sympy expression",
        "security",
        _convert(model="evil_sympy.pt2"),
        r"symbolic shape expression .* is not plain arithmetic",
    ),
    Case(
        "convert: TorchScript .pt with a code-running data.pkl",
        "security",
        _convert("--input-shape", "1,4", model="evil_ts.pt"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "convert --weights: state_dict holding a code-running object",
        "security",
        _convert("--weights", "{W}/evil_state.pt"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "convert --weights: a bare pickle",
        "security",
        _convert("--weights", "{W}/bare_pickle.pt"),
        r"not a zip archive .*refused unread",
    ),
    Case(
        "convert --weights: STACK_GLOBAL hidden behind popped names",
        "security",
        _convert("--weights", "{W}/stack_trick.pt"),
        r"refused: its pickle would call builtins\.exec",
    ),
    Case(
        "convert --weights: two data.pkl members",
        "security",
        _convert("--weights", "{W}/duplicate.pt"),
        r"several members named .*data\.pkl",
    ),
    Case(
        "convert --calib: object-dtype .npy",
        "security",
        _convert(calib="object.npy"),
        r"object array .*refused",
    ),
    Case(
        "prune: .pt2 whose sample inputs run code",
        "security",
        _cli("prune", "{W}/evil_inputs.pt2", "--ratio", "0.5", "--out", "{W}/out"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "prune --weights: state_dict holding a code-running object",
        "security",
        _cli(
            "prune",
            "{W}/nets.py:make",
            "--weights",
            "{W}/evil_state.pt",
            "--ratio",
            "0.5",
            "--out",
            "{W}/out",
        ),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    Case(
        "run: project whose model is a code-running .pt2",
        "security",
        _cli("run", "{W}/evil_project.toml", "--out", "{W}/out"),
        r"refused: its pickle would call _*builtins?_*\.exec",
        allowed_new=("out/report.json", "out/report.html"),
    ),
    Case(
        "zoo weights: source state_dict holding a code-running object",
        "security",
        _cli("zoo", "weights", "ds_cnn", "{W}/evil_state.pt", "--out", "{W}/out/w.pt"),
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
]

WRONG_SUCCESSES = [
    Case(
        "convert: model factory calls sys.exit(0)",
        "wrong success",
        _convert("--input-shape", "1,4", model="nets.py:exits"),
        r"model factory .*nets\.py:exits called sys\.exit\(0\)",
    ),
    Case(
        "convert: model forward() calls sys.exit(0)",
        "wrong success",
        _convert(model="nets.py:forward_exits"),
        r"forward\(\) called sys\.exit\(0\)",
    ),
    Case(
        "convert: model factory raises KeyboardInterrupt (exit 130, not 0)",
        "wrong success",
        _convert("--input-shape", "1,4", model="nets.py:interrupts"),
        r"interrupted: stopped; no half-written artifacts were left",
        hint=r"",
        code=130,
    ),
    Case(
        "run: project model factory calls sys.exit(0)",
        "wrong success",
        _cli("run", "{W}/exit_project.toml", "--out", "{W}/out"),
        r"called sys\.exit\(0\)",
        allowed_new=("out/report.json", "out/report.html"),
    ),
    Case(
        "convert --max-accuracy-drop: labels outside [0, classes)",
        "wrong success",
        _convert(
            "--val", "{W}/calib.npy", "--labels", "{W}/labels_range.npy", "--max-accuracy-drop", "1"
        ),
        r"labels must be one class id per sample in \[0, 3\); got shape \(8,\), range \[0, 7\]",
    ),
    Case(
        "convert --max-accuracy-drop: labels of the wrong shape",
        "wrong success",
        _convert(
            "--val", "{W}/calib.npy", "--labels", "{W}/labels_shape.npy", "--max-accuracy-drop", "1"
        ),
        r"labels have shape \(2, 4\)",
    ),
    Case(
        "emit --section a,b (would not assemble)",
        "wrong success",
        _cli("emit", "{W}/junk.tflite", "--section", "a,b", "--out", "{W}/out"),
        r"section name 'a,b' is not a valid linker section name",
        code=2,
    ),
    Case(
        "emit --arena-margin 5000000000 (overflows the C constant)",
        "wrong success",
        _cli("emit", "{W}/junk.tflite", "--arena-margin", "5000000000", "--out", "{W}/out"),
        r"arena margin 5000000000 B is out of range",
        code=2,
    ),
    Case(
        "emit: a float (not integer-only) .tflite",
        "wrong success",
        _cli("emit", str(HELLO_FLOAT), "--out", "{W}/out"),
        r"not an integer-only model .*computes in float",
        hint=r"--allow-float",
        needs=(HELLO_FLOAT,),
    ),
    Case(
        "firmware: a float (not integer-only) .tflite",
        "wrong success",
        lambda w: [
            "firmware",
            "--target",
            "mps2-an386",
            "--model",
            str(HELLO_FLOAT),
            "--out",
            w.s("out"),
        ],
        r"not an integer-only model",
        hint=r"--allow-float",
        needs=(HELLO_FLOAT,),
    ),
]


def _out_cases(
    command: str, argv: Callable[[Workspace, str], list[str]], *, kind: str = "dir"
) -> list[Case]:  # (init takes a folder too: it writes edgedeploy.toml into it)
    """The four bad output locations for one command's output option."""
    name = "x.toml" if command == "init" else "w.pt" if command == "zoo weights" else ""
    cases = [
        Case(
            f"{command}: output path under an existing file",
            "traceback",
            lambda w: argv(w, w.s(f"a_file/sub/{name}".rstrip("/"))),
            r"a_file is a file, so no folder can be made under it",
        ),
        Case(
            f"{command}: output path too long",
            "traceback",
            lambda w: argv(w, w.s(f"{LONG}/{name}".rstrip("/"))),
            r"a name in it is 300 bytes long",
        ),
        *[
            Case(
                f"{command}: output is an existing "
                + ("file, not a folder" if kind == "dir" else "folder, not a file"),
                "traceback",
                lambda w: argv(w, w.s("a_file" if kind == "dir" else "targets")),
                r"it is a file, not a folder" if kind == "dir" else r"it is a folder, not a file",
            )
        ]
        * (command != "init"),
    ]
    if UNWRITABLE is not None:
        cases.append(
            Case(
                f"{command}: output folder cannot be written",
                "traceback",
                lambda w: argv(w, f"{UNWRITABLE}/{name}".rstrip("/")),
                r"cannot create anything in /sys",
            )
        )
    return cases


OUTPUT_PATHS = [
    *_out_cases("emit", lambda w, o: ["emit", w.s("junk.tflite"), "--out", o]),
    *_out_cases(
        "convert",
        lambda w, o: [
            "convert",
            w.s("nets.py:make"),
            "--calib",
            w.s("calib.npy"),
            "--out",
            o,
            "--no-cache",
        ],
    ),
    *_out_cases(
        "convert --cache-dir",
        lambda w, o: [
            "convert",
            w.s("nets.py:make"),
            "--calib",
            w.s("calib.npy"),
            "--out",
            w.s("out"),
            "--cache-dir",
            o,
        ],
    ),
    *_out_cases("prune", lambda w, o: ["prune", w.s("nets.py:make"), "--ratio", "0.5", "--out", o]),
    *_out_cases(
        "firmware", lambda w, o: ["firmware", "--selftest", "--target", "mps2-an386", "--out", o]
    ),
    *_out_cases("init", lambda w, o: ["init", "--out", o], kind="file"),
    *_out_cases("run", lambda w, o: ["run", w.s("project.toml"), "--out", o]),
    *_out_cases(
        "bench",
        lambda w, o: ["bench", "--target", "host-tflm", "--model", w.s("junk.tflite"), "--out", o],
    ),
    *_out_cases("compile", lambda w, o: ["compile", w.s("junk.tflite"), "--out", o]),
    *_out_cases(
        "zoo weights",
        lambda w, o: ["zoo", "weights", "ds_cnn", w.s("missing.h5"), "--out", o],
        kind="file",
    ),
]

TRACEBACKS = [
    Case(
        "convert --calib: .npz holding an object array",
        "traceback",
        _convert(calib="object.npz"),
        r"object array .*refused",
    ),
    Case(
        "targets: a non-UTF-8 profile on the search path (the others still listed)",
        "traceback",
        _cli("targets"),
        r"latin1\.toml: cannot read target profile: not UTF-8 text",
        env={"EDGEDEPLOY_TARGETS_PATH": "{W}/targets"},
    ),
    Case(
        "emit --target: a non-UTF-8 profile",
        "traceback",
        _cli("emit", "{W}/junk.tflite", "--target", "{W}/targets/latin1.toml", "--out", "{W}/out"),
        r"not a TFLite flatbuffer|not UTF-8 text",
    ),
    Case(
        "convert: a 300-character model path",
        "traceback",
        lambda w: [
            "convert",
            w.s(f"{LONG}.pt2"),
            "--calib",
            w.s("calib.npy"),
            "--out",
            w.s("out"),
            "--no-cache",
        ],
        r"File name too long",
    ),
    Case(
        "emit: a 300-character model path",
        "traceback",
        lambda w: ["emit", w.s(f"{LONG}.tflite"), "--out", w.s("out")],
        r"no such model file: .* \(the name is too long\)",
    ),
    Case(
        "inspect: a 300-character model path",
        "traceback",
        lambda w: ["inspect", w.s(f"{LONG}.tflite")],
        r"no such model file: .* \(the name is too long\)",
    ),
    Case(
        "prune: a valid .pt2 (cannot be pruned)",
        "traceback",
        _cli("prune", "{W}/good.pt2", "--ratio", "0.5", "--out", "{W}/out"),
        r"a torch\.export program \(\.pt2\) cannot be pruned",
        hint=r"path/file\.py:factory",
    ),
]

MISLEADING = [
    Case(
        "convert: a folder as the model",
        "misleading",
        _convert(model="targets"),
        r"targets is a folder, not a model",
    ),
    Case(
        "firmware --model: a folder",
        "misleading",
        _cli("firmware", "--target", "mps2-an386", "--model", "{W}/targets", "--out", "{W}/out"),
        r"targets is a folder, not a model file",
    ),
    Case(
        "emit: a folder as the model",
        "misleading",
        _cli("emit", "{W}/targets", "--out", "{W}/out"),
        r"targets is a folder, not a model file",
    ),
    Case(
        "bench --timeout 0",
        "misleading",
        _cli(
            "bench",
            "--target",
            "host-tflm",
            "--model",
            "{W}/junk.tflite",
            "--timeout",
            "0",
            "--out",
            "{W}/out",
        ),
        r"--timeout must be a positive number of seconds \(got 0\)",
        code=2,
    ),
    Case(
        "bench --runs 0",
        "misleading",
        _cli(
            "bench",
            "--target",
            "host-tflm",
            "--model",
            "{W}/junk.tflite",
            "--runs",
            "0",
            "--out",
            "{W}/out",
        ),
        r"--runs must be at least 1",
        hint=r"",
        code=2,
    ),
]

#: representative bad inputs from issues 2-7 (their own files test them in depth)
EARLIER = [
    Case(
        "convert: missing model file",
        "earlier issue",
        _convert(model="none.pt"),
        r"model file not found",
    ),
    Case(
        "convert: NaN in the calibration data",
        "earlier issue",
        _convert(calib="calib_nan.npy"),
        r"NaN value",
        hint=r"",
    ),
    Case(
        "convert: a bad --input-shape",
        "earlier issue",
        _convert("--input-shape", "1,x"),
        r"'1,x' is not a shape",
        code=2,
    ),
    Case(
        "emit: not a TFLite file",
        "earlier issue",
        _cli("emit", "{W}/junk.tflite", "--out", "{W}/out"),
        r"not a TFLite flatbuffer",
    ),
    Case(
        "emit --name: not a C identifier",
        "earlier issue",
        _cli("emit", "{W}/junk.tflite", "--name", "9lives", "--out", "{W}/out"),
        r"'9lives' is not a valid C identifier",
        code=2,
    ),
    Case(
        "inspect: not a TFLite file",
        "earlier issue",
        _cli("inspect", "{W}/junk.tflite"),
        r"not a TFLite flatbuffer",
    ),
    Case(
        "prune: ratio out of range",
        "earlier issue",
        _cli("prune", "{W}/nets.py:make", "--ratio", "1.5", "--out", "{W}/out"),
        r"ratio",
        hint=r"",
    ),
    Case(
        "firmware: unknown target",
        "earlier issue",
        _cli("firmware", "--selftest", "--target", "no-such-board", "--out", "{W}/out"),
        r"unknown target 'no-such-board'",
    ),
    Case(
        "init: file exists, no --force",
        "earlier issue",
        _cli("init", "--out", "{W}/project.toml"),
        r"project\.toml exists",
        hint=r"--force",
    ),
    Case(
        "run: missing project file",
        "earlier issue",
        _cli("run", "{W}/none.toml", "--out", "{W}/out"),
        r"none\.toml",
        hint=r"",
    ),
    Case(
        "zoo weights: unknown model name",
        "earlier issue",
        _cli("zoo", "weights", "no_such_net", "{W}/missing.h5", "--out", "{W}/out/w.pt"),
        r"no_such_net",
        hint=r"",
    ),
    Case(
        "targets: unknown name",
        "earlier issue",
        _cli("targets", "no-such-board"),
        r"unknown target 'no-such-board'",
    ),
]

CASES: list[Case] = [
    *SECURITY,
    *WRONG_SUCCESSES,
    *OUTPUT_PATHS,
    *TRACEBACKS,
    *MISLEADING,
    *EARLIER,
]


# --- running one case ---------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int, bool]]:
    """Every path under ``root`` with its size, mtime and kind (content changes show)."""
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            snap[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.is_dir())
    return snap


@dataclass(frozen=True)
class Outcome:
    rc: int
    text: str
    traceback: bool
    changed: list[str]
    marker: bool


def run_case(case: Case, w: Workspace, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Run one case in process (stdout and stderr captured); what it did."""
    for key, value in {"EDGEDEPLOY_CACHE_DIR": "{W}/cache", **case.env}.items():
        monkeypatch.setenv(key, value.replace("{W}", str(w.root)))
    argv = [a.replace("{W}", str(w.root)) for a in case.argv(w)]
    before = _snapshot(w.root)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = main(["-q", *argv])
        except SystemExit as exc:  # escaping main() is a finding, not a crash of the test
            rc = exc.code if isinstance(exc.code, int) else 0
    text = buf.getvalue()
    after = _snapshot(w.root)
    changed = sorted(
        k for k in set(before) | set(after) if before.get(k) != after.get(k) and k != "MARKER"
    )
    for rel in changed:  # leave the workspace as it was for the next case
        p = w.root / rel
        if rel not in before and p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    marker = w.marker.exists()
    w.marker.unlink(missing_ok=True)
    return Outcome(
        rc=rc,
        text=text,
        traceback="Traceback" in text or "internal error" in text,
        changed=[c for c in changed if c not in case.allowed_new and c != "out"],
        marker=marker,
    )


def check_case(case: Case, w: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The assertions of the table (usable by other files' case lists)."""
    for need in case.needs:
        if not need.exists():
            pytest.skip(f"{need} not found")
    got = run_case(case, w, monkeypatch)
    assert not got.marker, f"code in a hostile file ran:\n{got.text}"
    assert not got.traceback, got.text
    assert got.rc not in (0, EXIT_INTERNAL), f"exit {got.rc}:\n{got.text}"
    if case.code is not None:
        assert got.rc == case.code, got.text
    flat = " ".join(got.text.split())
    assert re.search(case.message, flat), f"message {case.message!r} not in:\n{got.text}"
    assert re.search(case.hint, flat), f"hint {case.hint!r} not in:\n{got.text}"
    assert got.changed == [], f"written or changed: {got.changed}\n{got.text}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    check_case(case, ws, monkeypatch)


def test_broken_profile_does_not_hide_the_others(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEDEPLOY_TARGETS_PATH", ws.s("targets"))
    assert main(["targets", "--json"]) == 1
    out = capsys.readouterr()
    assert '"mps2-an386"' in out.out and "latin1.toml" in out.err


@pytest.mark.skipif(not HELLO_INT8.exists(), reason=f"{HELLO_INT8} not found")
def test_non_ascii_model_names_work(ws: Workspace, tmp_path: Path) -> None:
    # issue 14: a non-ASCII file name was a UnicodeEncodeError in emit and firmware
    model = tmp_path / "módel_ü.tflite"
    shutil.copy(HELLO_INT8, model)
    assert (
        main(["-q", "emit", str(model), "--golden-count", "0", "--out", str(tmp_path / "e")]) == 0
    )
    header = (tmp_path / "e" / "m_del_model_data.h").read_bytes()
    assert b"m\\xf3del_\\xfc.tflite" in header and header.isascii()
    assert (
        main(
            [
                "-q",
                "firmware",
                "--target",
                "mps2-an386",
                "--model",
                str(model),
                "--out",
                str(tmp_path / "f"),
            ]
        )
        == 0
    )


# --- the counts for the closing note -------------------------------------------------------


def counts() -> dict[str, int]:  # pragma: no cover - the closing note's figures, by hand
    """Run every case once; count outcomes by the issue's classes."""
    import tempfile

    out = dict.fromkeys(
        ("cases", "clear errors", "tracebacks", "partial files", "wrong successes",
         "code executions", "skipped (no ../shared)"), 0
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        w = make_workspace(Path(d))
        for case in CASES:
            if any(not n.exists() for n in case.needs):
                out["skipped (no ../shared)"] += 1
                continue
            out["cases"] += 1
            got = run_case(case, w, mp)
            flat = " ".join(got.text.split())
            bad = {
                "code executions": got.marker,
                "tracebacks": got.traceback or got.rc == EXIT_INTERNAL,
                "wrong successes": got.rc == 0,
                "partial files": bool(got.changed),
            }
            for k, v in bad.items():
                out[k] += int(v)
            clear = re.search(case.message, flat) and re.search(case.hint, flat)
            if not any(bad.values()) and clear:
                out["clear errors"] += 1
            else:
                print(f"NOT CLEAR: {case.id}: exit {got.rc}: {flat[:300]}")
    return out


if __name__ == "__main__":  # pragma: no cover
    for key, value in counts().items():
        print(f"{key}: {value}")
