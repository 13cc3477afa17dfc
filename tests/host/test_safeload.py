"""Host tier: model, weights and data files never run code they carry (toolchain.safeload).

Each hostile file would write a marker file if any of it were unpickled or evaluated; the
loaders must refuse it with a clear error before torch sees it, and real files must still load.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REFERENCE
from tests.support import payloads as P
from toolchain import safeload
from toolchain.errors import DataError, ModelLoadError, UnsafeFileError
from toolchain.modelsrc import load_model

PEERS = REFERENCE.parent / "peer_models"  # ../shared/peer_models


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bases")
    return {"pt2": P.good_pt2(d / "good.pt2"), "ts": P.good_torchscript(d / "good.pt")}


MODEL_PAYLOADS: dict[str, tuple[str, Callable[..., Path], str]] = {
    # name: (base, builder, what the error names)
    "pt2 sample inputs (runs code in torch.export.load)": (
        "pt2",
        P.pt2_sample_inputs,
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    "pt2 use_pickle weight (runs code in torch.export.load)": (
        "pt2",
        P.pt2_pickled_weight,
        r"refused: its pickle would call _*builtins?_*\.exec",
    ),
    "pt2 graph node calling torch.os.system": ("pt2", P.pt2_graph_call, "torch.os.system"),
    "pt2 sympy expression (runs code in torch.export.load)": (
        "pt2",
        P.pt2_sympy_expr,
        "not plain arithmetic",
    ),
    "pt2 opaque pickled constant": ("pt2", P.pt2_opaque_constant, "pickled custom object"),
    "pt2 AOTInductor library": ("pt2", P.pt2_aoti, "compiled code"),
    "TorchScript data.pkl": ("ts", P.torchscript_data_pkl, r"_*builtins?_*\.exec"),
}


@pytest.mark.parametrize("case", list(MODEL_PAYLOADS))
def test_hostile_model_files_are_refused(case: str, bases: dict[str, Path], tmp_path: Path) -> None:
    base, build, message = MODEL_PAYLOADS[case]
    marker = tmp_path / "marker"
    path = build(bases[base], tmp_path / f"evil{bases[base].suffix}", marker)
    with pytest.raises(UnsafeFileError, match=message) as ei:
        load_model(path, input_shapes=[(1, 4)])
    assert ei.value.hint, "the error says what to do"
    assert not marker.exists(), "code in the file ran"


WEIGHT_PAYLOADS: dict[str, tuple[Callable[..., Path], str]] = {
    "pickled object inside a state_dict": (P.weights_pickle, r"_*builtins?_*\.exec"),
    "bare pickle (not a zip)": (P.weights_bare_pickle, "not a zip archive"),
    "STACK_GLOBAL hidden behind popped names": (P.weights_stack_trick, r"_*builtins?_*\.exec"),
    "duplicate data.pkl members": (P.duplicate_member_zip, "several members named"),
}


@pytest.mark.parametrize("case", list(WEIGHT_PAYLOADS))
def test_hostile_weights_are_refused(case: str, tmp_path: Path) -> None:
    build, message = WEIGHT_PAYLOADS[case]
    marker = tmp_path / "marker"
    path = build(tmp_path / "w.pt", marker)
    with pytest.raises(UnsafeFileError, match=message):
        safeload.load_state_dict(path)
    arch = tmp_path / "arch.py"
    arch.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    with pytest.raises(UnsafeFileError, match=message):
        load_model(f"{arch}:make", weights=path, input_shapes=[(1, 4)])
    # the zoo's weight importer goes through the same door
    from toolchain.zoo.weights import load_weights

    with pytest.raises(UnsafeFileError, match=message):
        load_weights(torch.nn.Linear(4, 2), path)
    assert not marker.exists()


@pytest.mark.parametrize("build", [P.npy_object, P.npz_object], ids=["npy", "npz"])
def test_object_arrays_are_refused(build: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = build(tmp_path / ("d.npz" if build is P.npz_object else "d.npy"), marker)
    with pytest.raises(DataError, match="object array .* refused"):
        safeload.load_numpy(path, what="calibration data")
    from toolchain import data as data_mod
    from toolchain.prune import data as prune_data

    with pytest.raises(DataError, match="object array"):
        data_mod.load_data(str(path), inputs=[("x", (1, 4))], what="calibration data")
    with pytest.raises(DataError, match="object array"):
        prune_data._read_file(path, "training data")
    assert not marker.exists()


def test_stack_model_resolves_names_from_the_stack(tmp_path: Path) -> None:
    names = list(safeload.pickle_globals(P.stack_trick_pickle(tmp_path / "m")))
    assert names == [("builtins", "exec")]


def test_real_files_still_load(bases: dict[str, Path], tmp_path: Path) -> None:
    m = load_model(bases["pt2"])
    assert m.input_shapes == ((1, 4),)
    m = load_model(bases["ts"], input_shapes=[(1, 4)])
    assert m.output_shapes == ((1, 2),)
    sd = tmp_path / "sd.pt"
    torch.save({"state_dict": torch.nn.Linear(4, 2).state_dict()}, sd)
    assert set(safeload.load_state_dict(sd)["state_dict"]) == {"weight", "bias"}
    np.savez(tmp_path / "ok.npz", x=np.zeros((2, 4), np.float32))
    assert safeload.load_numpy(tmp_path / "ok.npz", what="data")["x"].shape == (2, 4)


@pytest.mark.skipif(not PEERS.is_dir(), reason=f"peer models not found at {PEERS}")
def test_peer_models_pass_the_inspection() -> None:
    files = sorted(PEERS.glob("*.pt"))
    assert files
    for f in files:
        safeload.check_torchscript(f)  # inspection only: loading 18 models is slow
    small = min(files, key=os.path.getsize)
    assert isinstance(safeload.load_torchscript(small), torch.jit.ScriptModule)


def test_not_a_model(tmp_path: Path) -> None:
    txt = tmp_path / "m.pt2"
    txt.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a zip archive"):
        load_model(txt)


def test_graph_checks_are_narrow() -> None:
    ok = {
        "nodes": [{"target": "torch.ops.aten.linear.default", "inputs": []}],
        "range_constraints": {"s0": {}, "u3": {}},
        "sizes": [{"as_expr": {"expr_str": "2*s0 + Max(s1, 4)"}}],
    }
    safeload._check_graph_json(ok, "m.pt2")
    for bad, message in (
        ({"target": "torch.os.system", "inputs": []}, "not a registered operator"),
        ({"target": "_operator.attrgetter", "inputs": []}, "not a registered operator"),
        ({"target": "torch.ops.aten.__class__", "inputs": []}, "not a registered operator"),
        ({"expr_str": "s0.__class__"}, "not plain arithmetic"),
        ({"expr_str": "Symbol('x')"}, "not plain arithmetic"),
        ({"range_constraints": {"u99999999999": {}}}, "implausible shape symbol"),
    ):
        with pytest.raises(UnsafeFileError, match=message):
            safeload._check_graph_json({"graph": [bad]}, "m.pt2")
